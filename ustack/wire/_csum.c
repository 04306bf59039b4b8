/* Optional accelerator for ustack.wire.checksum: the RFC 1071 sum in C.
 *
 * sum16(buffer) -> int: the ones' complement sum of the buffer read as
 * big-endian 16-bit words (an odd last byte padded with a zero), folded to
 * 16 bits with end-around carries.  It is congruent modulo 0xFFFF to
 * ustack.wire.checksum.partial_sum() of the same bytes, and 0 only for a
 * buffer of zeros.  The pure-Python fallback (checksum._py_payload_sum) is
 * what every caller gets without this module or with USTACK_NO_ACCEL=1;
 * tests/unit/test_wire_accel.py proves the two agree.
 *
 * Words are summed in native byte order, 32 bits at a time into a 64-bit
 * accumulator, and the folded result byte-swapped on little-endian machines:
 * the sum does not depend on byte order (RFC 1071 section 2.B).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

static uint32_t
fold64(uint64_t acc)
{
    acc = (acc & 0xFFFFFFFFu) + (acc >> 32);
    acc = (acc & 0xFFFFFFFFu) + (acc >> 32);
    acc = (acc & 0xFFFFu) + (acc >> 16);
    acc = (acc & 0xFFFFu) + (acc >> 16);
    acc = (acc & 0xFFFFu) + (acc >> 16);
    return (uint32_t)acc;
}

/* native-order sum of at most 2**30 bytes: each accumulator takes fewer
 * than 2**26 words of 32 bits, so none can overflow */
static uint64_t
sum_chunk(const unsigned char *p, Py_ssize_t n)
{
    uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    uint32_t w0, w1, w2, w3;
    while (n >= 16) {
        memcpy(&w0, p, 4);
        memcpy(&w1, p + 4, 4);
        memcpy(&w2, p + 8, 4);
        memcpy(&w3, p + 12, 4);
        a0 += w0;
        a1 += w1;
        a2 += w2;
        a3 += w3;
        p += 16;
        n -= 16;
    }
    while (n >= 4) {
        memcpy(&w0, p, 4);
        a0 += w0;
        p += 4;
        n -= 4;
    }
    if (n >= 2) {
        uint16_t h;
        memcpy(&h, p, 2);
        a1 += h;
        p += 2;
        n -= 2;
    }
    if (n) {
        /* the padding zero goes after the byte: in a big-endian word the
         * byte is the high half, in a little-endian one the low half */
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
        a2 += (uint64_t)p[0] << 8;
#else
        a2 += p[0];
#endif
    }
    return a0 + a1 + a2 + a3;
}

static uint32_t
sum_native(const unsigned char *p, Py_ssize_t n)
{
    const Py_ssize_t chunk = (Py_ssize_t)1 << 30;
    uint64_t total = 0;
    while (n > chunk) {
        total += fold64(sum_chunk(p, chunk));
        p += chunk;
        n -= chunk;
    }
    total += fold64(sum_chunk(p, n));
    uint32_t s = fold64(total);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    return s;
#else
    return ((s & 0xFFu) << 8) | (s >> 8);
#endif
}

static PyObject *
csum_sum16(PyObject *self, PyObject *arg)
{
    Py_buffer view;
    uint32_t s;
    (void)self;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0) {
        /* not a contiguous buffer (a strided memoryview, a list of ints...):
         * take its bytes as int.from_bytes does, so both paths accept and
         * refuse the same arguments */
        PyObject *copy;
        PyErr_Clear();
        copy = PyObject_Bytes(arg);
        if (copy == NULL)
            return NULL;
        s = sum_native((const unsigned char *)PyBytes_AS_STRING(copy), PyBytes_GET_SIZE(copy));
        Py_DECREF(copy);
        return PyLong_FromUnsignedLong(s);
    }
    s = sum_native((const unsigned char *)view.buf, view.len);
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(s);
}

static PyMethodDef csum_methods[] = {
    {"sum16", csum_sum16, METH_O,
     "sum16(buffer) -> int: RFC 1071 sum of big-endian 16-bit words, folded to 16 bits."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef csum_module = {
    PyModuleDef_HEAD_INIT, "ustack.wire._csum",
    "Optional C accelerator for ustack.wire.checksum (see checksum.py).", -1, csum_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__csum(void)
{
    return PyModule_Create(&csum_module);
}
