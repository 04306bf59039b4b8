/* Optional accelerator for ustack.link.af_packet: batched sends.
 *
 * sendmany(fd, frames, start[, lead]) -> (sent, nbytes, errno): send frames[start:]
 * (a list of bytes) one datagram each with sendmmsg(2), up to 64 per system
 * call, until all are sent or one fails.  ``sent`` frames (``nbytes`` bytes)
 * went out; ``errno`` is 0, or the error of frames[start + sent] (EAGAIN when
 * the socket is full).  A list holding anything but bytes raises TypeError
 * before anything is sent.  AfPacketDevice.send_many uses it when it imports
 * (not with USTACK_NO_ACCEL=1); its plain loop of send() calls does the same
 * (tests/unit/test_link_af_packet_send.py compares the two).  bench: ~0.3 us
 * less CPU per 1514-byte frame than a send() each (docs/link.md).
 */
#define _GNU_SOURCE
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>

#define BATCH 64
#define MAX_PIECES 8

/* sendmany(fd, frames, start[, lead]) -> (sent, nbytes, errno): frames[start:]
 * with sendmmsg, each message ``lead + frame`` when ``lead`` (bytes) is given
 * (the virtio_net_hdr of a vnet socket as its own iovec: no joined copy);
 * ``nbytes`` counts the lead too. */
static PyObject *
batch_sendmany(PyObject *self, PyObject *args)
{
    int fd, err = 0;
    PyObject *seq, *lead = NULL;
    Py_ssize_t start, n, i, sent = 0, nbytes = 0, lead_len = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "iO!n|O!", &fd, &PyList_Type, &seq, &start,
                          &PyBytes_Type, &lead))
        return NULL;
    if (lead != NULL)
        lead_len = PyBytes_GET_SIZE(lead);
    n = PyList_GET_SIZE(seq);
    if (start < 0)
        start = 0;
    for (i = start; i < n; i++) {
        if (!PyBytes_Check(PyList_GET_ITEM(seq, i))) {
            PyErr_SetString(PyExc_TypeError, "sendmany needs a list of bytes");
            return NULL;
        }
    }
    i = start;
    while (i < n) {
        struct mmsghdr msgs[BATCH];
        struct iovec iov[2 * BATCH];
        int k = 0, r, j;
        while (k < BATCH && i + k < n) {
            PyObject *b = PyList_GET_ITEM(seq, i + k);
            struct iovec *v = &iov[2 * k];
            memset(&msgs[k], 0, sizeof(msgs[k]));  /* (only the entries used) */
            msgs[k].msg_hdr.msg_iov = v;
            if (lead_len) {
                v->iov_base = PyBytes_AS_STRING(lead);
                v->iov_len = (size_t)lead_len;
                v++;
                msgs[k].msg_hdr.msg_iovlen = 2;
            } else {
                msgs[k].msg_hdr.msg_iovlen = 1;
            }
            v->iov_base = PyBytes_AS_STRING(b);
            v->iov_len = (size_t)PyBytes_GET_SIZE(b);
            k++;
        }
        r = sendmmsg(fd, msgs, (unsigned int)k, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            err = errno;
            break;
        }
        for (j = 0; j < r; j++)
            nbytes += (Py_ssize_t)PyBytes_GET_SIZE(PyList_GET_ITEM(seq, i + j)) + lead_len;
        i += r;
        sent += r;
        /* r < k: the next call reports the error of frames[i] */
    }
    return Py_BuildValue("nni", sent, nbytes, err);
}


static int
gather_check(PyObject *seq, Py_ssize_t start)
{
    Py_ssize_t n = PyList_GET_SIZE(seq), i, k, m;
    for (i = start; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(seq, i);
        if (!PyTuple_Check(item) || (m = PyTuple_GET_SIZE(item)) < 1 || m > MAX_PIECES) {
            PyErr_SetString(PyExc_TypeError,
                            "sendgather needs a list of tuples of 1..8 buffers");
            return -1;
        }
        for (k = 0; k < m; k++) {
            PyObject *piece = PyTuple_GET_ITEM(item, k);
            if (!PyObject_CheckBuffer(piece)
                    || (PyMemoryView_Check(piece)
                        && !PyBuffer_IsContiguous(PyMemoryView_GET_BUFFER(piece), 'C'))) {
                PyErr_SetString(PyExc_TypeError,
                                "sendgather: a piece is not a contiguous buffer");
                return -1;
            }
        }
    }
    return 0;
}

/* One frame's sendmsg (EINTR retried), stamped with CLOCK_MONOTONIC just
 * before the call.  Returns the sendmsg result (< 0: *err is errno) and, on
 * success, appends the stamp as a float to stamps; -2 if that append failed
 * (a Python error is set). */
static ssize_t
stamped_sendmsg(int fd, struct iovec *iov, size_t iovlen, PyObject *stamps, int *err)
{
    struct msghdr msg;
    struct timespec ts;
    ssize_t r;
    PyObject *stamp;
    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = iov;
    msg.msg_iovlen = iovlen;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    do {
        r = sendmsg(fd, &msg, MSG_DONTWAIT);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        *err = errno;
        return r;
    }
    stamp = PyFloat_FromDouble((double)ts.tv_sec + (double)ts.tv_nsec * 1e-9);
    if (stamp == NULL || PyList_Append(stamps, stamp) < 0) {
        Py_XDECREF(stamp);
        return -2;
    }
    Py_DECREF(stamp);
    return r;
}

static PyObject *
batch_sendgather(PyObject *self, PyObject *args)
{
    int fd, err = 0;
    PyObject *seq, *stamps;
    Py_ssize_t start, n, i, sent = 0, nbytes = 0;
    (void)self;
    if (!PyArg_ParseTuple(args, "iO!n", &fd, &PyList_Type, &seq, &start))
        return NULL;
    if (start < 0)
        start = 0;
    if (gather_check(seq, start) < 0)
        return NULL;
    stamps = PyList_New(0);
    if (stamps == NULL)
        return NULL;
    n = PyList_GET_SIZE(seq);
    for (i = start; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(seq, i);
        Py_ssize_t m = PyTuple_GET_SIZE(item), k, got = 0;
        Py_buffer views[MAX_PIECES];
        struct iovec iov[MAX_PIECES];
        ssize_t r;
        for (k = 0; k < m; k++) {
            if (PyObject_GetBuffer(PyTuple_GET_ITEM(item, k), &views[k], PyBUF_SIMPLE) < 0)
                break;
            got++;
            iov[k].iov_base = views[k].buf;
            iov[k].iov_len = (size_t)views[k].len;
        }
        if (got < m) {  /* not contiguous: nothing of this item was sent */
            for (k = 0; k < got; k++)
                PyBuffer_Release(&views[k]);
            Py_DECREF(stamps);
            return NULL;
        }
        r = stamped_sendmsg(fd, iov, (size_t)m, stamps, &err);
        for (k = 0; k < m; k++)
            PyBuffer_Release(&views[k]);
        if (r == -2) {
            Py_DECREF(stamps);
            return NULL;
        }
        if (r < 0)
            break;
        nbytes += (Py_ssize_t)r;
        sent++;
    }
    return Py_BuildValue("nniN", sent, nbytes, err, stamps);
}

/* sendround(fd, frames, start) -> (sent, nbytes, err, stamps, gso) or None:
 * AfPacketDevice.send_round's loop for a vnet-header socket in one call.
 * Each item of frames[start:] is a whole frame (bytes: sent behind an empty
 * virtio_net_hdr) or a TCP super-segment (head, tcp, payload, gso_size):
 * head the Ethernet + 20-byte IPv4 header (bytes), tcp the whole TCP header
 * (bytes), payload any contiguous buffer.  A super-segment goes out as
 * af_packet._gso_pieces gives it to sendmsg: virtio_net_hdr (NEEDS_CSUM,
 * GSO_TCPV4 when the payload is longer than gso_size), head, tcp[:16], the
 * pseudo-header sum in the checksum field, tcp[18:], payload (not copied).
 * One sendmsg per frame, stamped (CLOCK_MONOTONIC) just before, as
 * sendgather.  None, nothing sent, if an item is anything else or a
 * super-segment _gso_pieces would decline (the caller's own path takes the
 * round).  sent frames went out; nbytes counts their frame bytes (without
 * the virtio_net_hdr); err is 0 or the errno of frames[start + sent]; gso is
 * the number of super-segments among frames[start:]. */
#define VNET_LEN 10

static int
round_item_ok(PyObject *item, Py_ssize_t *gso)
{
    PyObject *head, *tcp, *size;
    const unsigned char *h, *t;
    Py_ssize_t hlen;
    long gs;
    if (PyBytes_Check(item))
        return 1;
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 4)
        return 0;
    head = PyTuple_GET_ITEM(item, 0);
    tcp = PyTuple_GET_ITEM(item, 1);
    size = PyTuple_GET_ITEM(item, 3);
    if (!PyBytes_Check(head) || !PyBytes_Check(tcp) || !PyLong_Check(size)
            || !PyObject_CheckBuffer(PyTuple_GET_ITEM(item, 2)))
        return 0;
    h = (const unsigned char *)PyBytes_AS_STRING(head);
    t = (const unsigned char *)PyBytes_AS_STRING(tcp);
    hlen = PyBytes_GET_SIZE(tcp);
    if (PyBytes_GET_SIZE(head) != 34 || h[14] != 0x45 || h[12] != 8 || h[13] || h[23] != 6
            || hlen < 20 || ((Py_ssize_t)(t[12] >> 4) << 2) != hlen)
        return 0;
    gs = PyLong_AsLong(size);
    if (gs == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if (gs <= 0 || gs > 65535)
        return 0;
    (*gso)++;
    return 1;
}

static PyObject *
batch_sendround(PyObject *self, PyObject *args)
{
    int fd, err = 0;
    PyObject *seq, *stamps;
    Py_ssize_t start, n, i, sent = 0, nbytes = 0, gso = 0;
    static const unsigned char vnet_none[VNET_LEN] = {0};
    (void)self;
    if (!PyArg_ParseTuple(args, "iO!n", &fd, &PyList_Type, &seq, &start))
        return NULL;
    if (start < 0)
        start = 0;
    n = PyList_GET_SIZE(seq);
    for (i = start; i < n; i++) {
        if (!round_item_ok(PyList_GET_ITEM(seq, i), &gso))
            Py_RETURN_NONE;
    }
    stamps = PyList_New(0);
    if (stamps == NULL)
        return NULL;
    for (i = start; i < n; i++) {
        PyObject *item = PyList_GET_ITEM(seq, i);
        struct iovec iov[6];
        unsigned char vnet[VNET_LEN], pseudo[2];
        Py_buffer view;
        int have_view = 0;
        size_t iovlen, frame_len;
        ssize_t r;
        if (PyBytes_Check(item)) {
            iov[0].iov_base = (void *)vnet_none;
            iov[0].iov_len = VNET_LEN;
            iov[1].iov_base = PyBytes_AS_STRING(item);
            iov[1].iov_len = (size_t)PyBytes_GET_SIZE(item);
            iovlen = 2;
            frame_len = iov[1].iov_len;
        } else {
            PyObject *head = PyTuple_GET_ITEM(item, 0), *tcp = PyTuple_GET_ITEM(item, 1);
            const unsigned char *h = (const unsigned char *)PyBytes_AS_STRING(head);
            unsigned char *t = (unsigned char *)PyBytes_AS_STRING(tcp);
            size_t hlen = (size_t)PyBytes_GET_SIZE(tcp), plen;
            unsigned long gs = PyLong_AsUnsignedLong(PyTuple_GET_ITEM(item, 3));
            uint16_t u;
            uint64_t sum;
            if (PyObject_GetBuffer(PyTuple_GET_ITEM(item, 2), &view, PyBUF_SIMPLE) < 0) {
                if (sent == 0) {  /* (checked above: not expected) nothing sent yet */
                    Py_DECREF(stamps);
                    PyErr_Clear();
                    Py_RETURN_NONE;
                }
                Py_DECREF(stamps);
                return NULL;
            }
            have_view = 1;
            plen = (size_t)view.len;
            /* struct virtio_net_hdr, native byte order as VNET_HDR "=BBHHHH" */
            vnet[0] = 1;  /* VIRTIO_NET_HDR_F_NEEDS_CSUM */
            vnet[1] = plen > gs ? 1 : 0;  /* GSO_TCPV4 : GSO_NONE */
            u = (uint16_t)(34 + hlen);
            memcpy(vnet + 2, &u, 2);
            u = (uint16_t)(plen > gs ? gs : 0);
            memcpy(vnet + 4, &u, 2);
            u = 34;
            memcpy(vnet + 6, &u, 2);
            u = 16;
            memcpy(vnet + 8, &u, 2);
            /* the pseudo-header sum (addresses, protocol 6, TCP length),
             * folded as af_packet._gso_pieces: (src + dst + 6 + len) % 0xFFFF
             * or 0xFFFF, big-endian */
            sum = ((uint64_t)h[26] << 24 | (uint64_t)h[27] << 16 | (uint64_t)h[28] << 8 | h[29])
                + ((uint64_t)h[30] << 24 | (uint64_t)h[31] << 16 | (uint64_t)h[32] << 8 | h[33])
                + 6 + hlen + plen;
            sum %= 0xFFFF;
            if (sum == 0)
                sum = 0xFFFF;
            pseudo[0] = (unsigned char)(sum >> 8);
            pseudo[1] = (unsigned char)(sum & 0xFF);
            iov[0].iov_base = vnet;
            iov[0].iov_len = VNET_LEN;
            iov[1].iov_base = (void *)h;
            iov[1].iov_len = 34;
            iov[2].iov_base = t;
            iov[2].iov_len = 16;
            iov[3].iov_base = pseudo;
            iov[3].iov_len = 2;
            iov[4].iov_base = t + 18;
            iov[4].iov_len = hlen - 18;
            iov[5].iov_base = view.buf;
            iov[5].iov_len = plen;
            iovlen = 6;
            frame_len = 34 + hlen + plen;
        }
        r = stamped_sendmsg(fd, iov, iovlen, stamps, &err);
        if (have_view)
            PyBuffer_Release(&view);
        if (r == -2) {
            Py_DECREF(stamps);
            return NULL;
        }
        if (r < 0)
            break;
        nbytes += (Py_ssize_t)frame_len;
        sent++;
    }
    return Py_BuildValue("nniNn", sent, nbytes, err, stamps, gso);
}

/* ring_read(ring, slot_size, nslots, head, budget, pkttype_off, trusted_bits,
 *           frames, times, offset, now) -> (head, taken, nbytes, skipped, stop)
 *
 * The receive side: the loop of AfPacketDevice._on_readable_ring over the
 * ready slots of a TPACKET_V2 receive ring (tpacket2_hdr: tp_status, tp_len,
 * tp_snaplen, tp_mac, tp_net, tp_sec, tp_nsec), from ``head`` on, at most
 * ``budget`` slots.  A slot holding an outgoing frame (sll_pkttype at
 * ``pkttype_off`` is PACKET_OUTGOING) is counted in ``skipped``; any other
 * appends ``(frame bytes, tp_status & trusted_bits != 0)`` to ``frames`` and
 * its arrival time ``tp_sec + tp_nsec * 1e-9 - offset`` (at most ``now``) to
 * ``times`` (ustack.link.rxtime, the same double arithmetic as the Python
 * loop); both are handed back to the kernel (tp_status = TP_STATUS_KERNEL)
 * and ``taken``.  It stops at the first slot not ready (``stop`` 0), when
 * the budget is spent (``stop`` 0), or before a ready slot it leaves to the
 * caller's general code (``stop`` 1: a frame bigger than the slot,
 * tp_snaplen != tp_len, or a header pointing outside the slot), which is
 * then at the returned ``head``, still the user's.  The Python loop does the
 * same slot by slot; tests/unit/test_link_ring_read.py compares the two. */
#define TP_STATUS_USER 1u
#define PACKET_OUTGOING 4

static PyObject *
batch_ring_read(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer ring;
    Py_ssize_t slot_size, nslots, head, budget, pkt_off, taken = 0, nbytes = 0, skipped = 0;
    unsigned long trusted_bits;
    double offset, now;
    PyObject *frames, *times;
    int stop = 0, failed = 0;
    (void)self;
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError, "ring_read takes 11 arguments");
        return NULL;
    }
    frames = args[7];
    times = args[8];
    if (!PyList_Check(frames) || !PyList_Check(times)) {
        PyErr_SetString(PyExc_TypeError, "ring_read: frames and times must be lists");
        return NULL;
    }
    slot_size = PyLong_AsSsize_t(args[1]);
    nslots = PyLong_AsSsize_t(args[2]);
    head = PyLong_AsSsize_t(args[3]);
    budget = PyLong_AsSsize_t(args[4]);
    pkt_off = PyLong_AsSsize_t(args[5]);
    trusted_bits = PyLong_AsUnsignedLongMask(args[6]);
    offset = PyFloat_AsDouble(args[9]);
    now = PyFloat_AsDouble(args[10]);
    if (PyErr_Occurred())
        return NULL;
    if (PyObject_GetBuffer(args[0], &ring, PyBUF_WRITABLE) < 0)
        return NULL;
    if (slot_size < 64 || nslots < 1 || ring.len < slot_size * nslots || head < 0
            || head >= nslots || pkt_off < 32 || pkt_off >= slot_size) {
        PyBuffer_Release(&ring);
        PyErr_SetString(PyExc_ValueError, "ring_read: bad ring geometry");
        return NULL;
    }
    {
        uint8_t *base = ring.buf;
        while (budget > 0) {
            uint8_t *slot = base + head * slot_size;
            uint32_t status = __atomic_load_n((uint32_t *)slot, __ATOMIC_ACQUIRE);
            uint32_t tp_len, snaplen, sec, nsec;
            uint16_t mac;
            if (!(status & TP_STATUS_USER))
                break;
            memcpy(&tp_len, slot + 4, 4);
            memcpy(&snaplen, slot + 8, 4);
            memcpy(&mac, slot + 12, 2);
            memcpy(&sec, slot + 16, 4);
            memcpy(&nsec, slot + 20, 4);
            if (snaplen != tp_len || (Py_ssize_t)mac + (Py_ssize_t)snaplen > slot_size) {
                stop = 1;  /* the caller's general code takes this slot */
                break;
            }
            if (slot[pkt_off] == PACKET_OUTGOING) {
                skipped++;
            } else {
                PyObject *data = PyBytes_FromStringAndSize((const char *)slot + mac,
                                                           (Py_ssize_t)snaplen);
                PyObject *item, *stamp;
                double t;
                if (data == NULL) { failed = 1; break; }
                item = PyTuple_New(2);
                if (item == NULL) { Py_DECREF(data); failed = 1; break; }
                PyTuple_SET_ITEM(item, 0, data);
                PyTuple_SET_ITEM(item, 1, PyBool_FromLong((status & trusted_bits) != 0));
                t = (double)sec + (double)nsec * 1e-9 - offset;
                stamp = PyFloat_FromDouble(t < now ? t : now);
                if (stamp == NULL) { Py_DECREF(item); failed = 1; break; }
                if (PyList_Append(frames, item) < 0) {
                    Py_DECREF(item); Py_DECREF(stamp); failed = 1; break;
                }
                Py_DECREF(item);
                if (PyList_Append(times, stamp) < 0) {
                    /* (keep the two lists the same length) */
                    Py_DECREF(stamp);
                    PyList_SetSlice(frames, PyList_GET_SIZE(frames) - 1,
                                    PyList_GET_SIZE(frames), NULL);
                    failed = 1;
                    break;
                }
                Py_DECREF(stamp);
                nbytes += (Py_ssize_t)snaplen;
            }
            /* hand the slot back (TP_STATUS_KERNEL) */
            __atomic_store_n((uint32_t *)slot, 0u, __ATOMIC_RELEASE);
            taken++;
            budget--;
            if (++head == nslots)
                head = 0;
        }
    }
    PyBuffer_Release(&ring);
    if (failed)
        return NULL;
    {
        /* (built by hand: Py_BuildValue's format parsing was a tenth of
         * this call) */
        PyObject *out = PyTuple_New(5), *v;
        Py_ssize_t vals[5] = {head, taken, nbytes, skipped, stop};
        int k;
        if (out == NULL)
            return NULL;
        for (k = 0; k < 5; k++) {
            v = PyLong_FromSsize_t(vals[k]);
            if (v == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyTuple_SET_ITEM(out, k, v);
        }
        return out;
    }
}

static PyMethodDef batch_methods[] = {
    {"sendmany", batch_sendmany, METH_VARARGS,
     "sendmany(fd, frames, start[, lead]) -> (sent, nbytes, errno): sendmmsg of "
     "frames[start:], each after lead."},
    {"sendgather", batch_sendgather, METH_VARARGS,
     "sendgather(fd, items, start) -> (sent, nbytes, errno, stamps): one gathered sendmsg "
     "per tuple of buffers in items[start:], each stamped (CLOCK_MONOTONIC) just before."},
    {"sendround", batch_sendround, METH_VARARGS,
     "sendround(fd, frames, start) -> (sent, nbytes, errno, stamps, gso) or None: "
     "AfPacketDevice.send_round's frames and super-segments, one stamped sendmsg each."},
    {"ring_read", (PyCFunction)(void (*)(void))batch_ring_read, METH_FASTCALL,
     "ring_read(ring, slot_size, nslots, head, budget, pkttype_off, trusted_bits, frames, "
     "times, offset, now) -> (head, taken, nbytes, skipped, stop): the ready slots of a "
     "TPACKET_V2 receive ring into frames and times."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef batch_module = {
    PyModuleDef_HEAD_INIT, "ustack.link._batch",
    "Optional C accelerator for ustack.link.af_packet (batched sends, ring reads).", -1, batch_methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__batch(void)
{
    return PyModule_Create(&batch_module);
}
