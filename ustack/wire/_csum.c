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

/* tcp4_frame(lead, opt, payload, src, dst, base, ip_base, opt_sum, ttl, ident,
 *            sport, dport, seq, ack, off_flags, window, urgent) -> bytes | None
 *
 * One frame of SegmentEncoder.encode_ipv4_many (ustack/wire/tcp.py): ``lead``,
 * the IPv4 header (DF, protocol 6, its checksum from ``ip_base``), the TCP
 * header (its checksum from ``base``, ``opt_sum`` and the payload's sum),
 * ``opt`` and ``payload``, in one allocation.  The arithmetic is the Python
 * loop's, on exact 64-bit integers (no term reaches 2**40), so the bytes are
 * the same.  None when an argument is outside what that loop's struct.pack
 * accepts without an error (a port above 0xFFFF, a negative number, an
 * address not of 4 bytes, a non-bytes lead, options or address): the caller
 * then runs the Python code, which raises as before. */
static int
arg_u64(PyObject *o, unsigned long long max, unsigned long long *out)
{
    unsigned long long v;
    if (!PyLong_CheckExact(o))
        return 0;
    v = PyLong_AsUnsignedLongLong(o);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (v > max)
        return 0;
    *out = v;
    return 1;
}

static void
put16(unsigned char *p, unsigned long long v)
{
    p[0] = (unsigned char)(v >> 8);
    p[1] = (unsigned char)v;
}

static PyObject *
csum_tcp4_frame(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *lead, *opt, *src, *dst, *out;
    Py_buffer pay;
    unsigned long long base, ip_base, opt_sum, ttl, ident, sport, dport, seq, ack, off_flags,
        window, urgent, s, ip_s, psum = 0, tcp_len;
    Py_ssize_t nlead, nopt, hlen;
    unsigned char *p;
    (void)self;
    if (nargs != 17) {
        PyErr_SetString(PyExc_TypeError, "tcp4_frame takes 17 arguments");
        return NULL;
    }
    lead = args[0];
    opt = args[1];
    src = args[3];
    dst = args[4];
    if (!PyBytes_CheckExact(lead) || !PyBytes_CheckExact(opt) || !PyBytes_CheckExact(src)
            || !PyBytes_CheckExact(dst) || PyBytes_GET_SIZE(src) != 4
            || PyBytes_GET_SIZE(dst) != 4)
        Py_RETURN_NONE;
    if (!arg_u64(args[5], 1ULL << 40, &base) || !arg_u64(args[6], 1ULL << 40, &ip_base)
            || !arg_u64(args[7], 0xFFFF, &opt_sum) || !arg_u64(args[8], 0xFF, &ttl)
            || !arg_u64(args[9], 0xFFFF, &ident) || !arg_u64(args[10], 0xFFFF, &sport)
            || !arg_u64(args[11], 0xFFFF, &dport) || !arg_u64(args[12], 0xFFFFFFFFULL, &seq)
            || !arg_u64(args[13], 0xFFFFFFFFULL, &ack)
            || !arg_u64(args[14], 0xFFFF, &off_flags) || !arg_u64(args[15], 0xFFFF, &window)
            || !arg_u64(args[16], 0xFFFF, &urgent))
        Py_RETURN_NONE;
    nopt = PyBytes_GET_SIZE(opt);
    hlen = 20 + nopt;
    if (PyObject_GetBuffer(args[2], &pay, PyBUF_SIMPLE) < 0) {
        PyErr_Clear();
        Py_RETURN_NONE;
    }
    tcp_len = (unsigned long long)hlen + (unsigned long long)pay.len;
    if (tcp_len > 0xFFFF - 20) {
        PyBuffer_Release(&pay);
        Py_RETURN_NONE;
    }
    if (pay.len)
        psum = sum_native((const unsigned char *)pay.buf, pay.len);
    s = (base + tcp_len + ((sport << 16) | dport) + seq + ack + ((off_flags << 16) | window)
         + urgent + opt_sum + psum) % 0xFFFF;
    ip_s = (ip_base + tcp_len + ident) % 0xFFFF;
    nlead = PyBytes_GET_SIZE(lead);
    out = PyBytes_FromStringAndSize(NULL, nlead + 20 + (Py_ssize_t)tcp_len);
    if (out == NULL) {
        PyBuffer_Release(&pay);
        return NULL;
    }
    p = (unsigned char *)PyBytes_AS_STRING(out);
    memcpy(p, PyBytes_AS_STRING(lead), (size_t)nlead);
    p += nlead;
    p[0] = 0x45;
    p[1] = 0;
    put16(p + 2, 20 + tcp_len);
    put16(p + 4, ident);
    put16(p + 6, 0x4000);  /* DF */
    p[8] = (unsigned char)ttl;
    p[9] = 6;
    put16(p + 10, ip_s ? 0xFFFF - ip_s : 0);
    memcpy(p + 12, PyBytes_AS_STRING(src), 4);
    memcpy(p + 16, PyBytes_AS_STRING(dst), 4);
    p += 20;
    put16(p, sport);
    put16(p + 2, dport);
    put16(p + 4, seq >> 16);
    put16(p + 6, seq);
    put16(p + 8, ack >> 16);
    put16(p + 10, ack);
    put16(p + 12, off_flags);
    put16(p + 14, window);
    put16(p + 16, s ? 0xFFFF - s : 0);
    put16(p + 18, urgent);
    memcpy(p + 20, PyBytes_AS_STRING(opt), (size_t)nopt);
    if (pay.len)
        memcpy(p + hlen, pay.buf, (size_t)pay.len);
    PyBuffer_Release(&pay);
    return out;
}

static PyMethodDef csum_methods[] = {
    {"sum16", csum_sum16, METH_O,
     "sum16(buffer) -> int: RFC 1071 sum of big-endian 16-bit words, folded to 16 bits."},
    {"tcp4_frame", (PyCFunction)(void (*)(void))csum_tcp4_frame, METH_FASTCALL,
     "tcp4_frame(lead, opt, payload, src, dst, base, ip_base, opt_sum, ttl, ident, sport, "
     "dport, seq, ack, off_flags, window, urgent) -> bytes | None: one Ethernet + IPv4 + "
     "TCP frame of SegmentEncoder.encode_ipv4_many."},
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
