/* Optional accelerator for ustack.driver.syn_batch: the SYN channel's batch
 * path in one C call per step instead of ~130 numpy calls per wakeup.
 *
 * A wakeup under a flood reads a few thousand SYNs and answers a few dozen;
 * the numpy version's cost is mostly per call (~1-5 us each, far more with
 * the caches cold on a loaded machine), not per row.  These functions do
 * exactly what syn_batch's numpy code does, row by row, over the same
 * arrays (C-contiguous uint8 rows of FRAME_LEN bytes):
 *
 *   shed(rows, budget, table_a, table_b, bits, proven) -> (keep, resent_kept,
 *        proven_kept): RetransmitFilter.keys/seen, ProvenPeers.mask and the
 *        order of SynBatch._shed (retransmissions, then proven sources, then
 *        the others, newest first within each); ``keep`` (int32 indices,
 *        ascending) are the first ``budget`` of that order; the others'
 *        fingerprints are written into ``table_b`` in that order.
 *   shape_ok(rows, trusted, expect, care, ours) -> bytes of 0/1:
 *        SynBatch._shape_ok.
 *   cookie_inputs(rows, count) -> bytes: the 16-byte hash inputs per row.
 *   answer(rows, hashes, idents, prefix, params) -> bytes: the SYN-ACK rows
 *        of SynBatch._answer.
 *   ring_shed(ring, ...): read and shed straight from the receive ring (the
 *        rows of a wakeup are not copied unless kept; see below).
 *
 * syn_batch uses it when it imports (not with USTACK_NO_ACCEL=1);
 * tests/unit/test_syn_batch.py runs every batch test with and without it
 * (and both against the plain path, byte for byte).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FRAME_LEN 74
#define COOKIE_BITS 24
#define COOKIE_MASK ((1u << COOKIE_BITS) - 1)
#define TS_BITS 6
#define TS_MASK ((1u << TS_BITS) - 1)
#define TS_SACK (1u << 4)

static inline uint32_t be32(const uint8_t *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static inline uint32_t be16(const uint8_t *p) { return (uint32_t)p[0] << 8 | p[1]; }
static inline void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void put16(uint8_t *p, uint32_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline uint64_t word_sum(const uint8_t *p, int start, int stop) {
    uint64_t s = 0;
    for (int i = start; i < stop; i += 2) s += be16(p + i);
    return s;
}

static int rows_of(Py_buffer *b, Py_ssize_t *n) {
    if (b->len % FRAME_LEN) {
        PyErr_SetString(PyExc_ValueError, "rows must be whole 74-byte frames");
        return -1;
    }
    *n = b->len / FRAME_LEN;
    return 0;
}

/* RetransmitFilter.keys for one row: slot << 16 | tag (16-bit fingerprints) */
static inline uint64_t row_key(const uint8_t *r, int bits) {
    uint64_t src = be32(r + 26), sport = be16(r + 34), dport = be16(r + 36), seq = be32(r + 38);
    uint64_t mixed = ((src << 32) | seq) ^ (((sport << 16) | dport) * 0x9E3779B97F4A7C15ull);
    mixed *= 0xBF58476D1CE4E5B9ull;
    uint64_t slot = mixed >> (64 - bits);
    uint64_t tag = (mixed >> (48 - bits)) & 0xFFFF;
    if (tag == 0) tag = 1;
    return slot << 16 | tag;
}

static int is_proven(const uint64_t *arr, Py_ssize_t len, uint64_t v) {
    Py_ssize_t lo = 0, hi = len;
    while (lo < hi) {
        Py_ssize_t mid = (lo + hi) / 2;
        if (arr[mid] < v) lo = mid + 1; else hi = mid;
    }
    return lo < len && arr[lo] == v;
}

static PyObject *
syn_shed(PyObject *self, PyObject *args)
{
    Py_buffer rows, ta, tb, pv;
    Py_ssize_t budget, n, i;
    int bits;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*nw*w*iy*", &rows, &budget, &ta, &tb, &bits, &pv))
        return NULL;
    uint64_t *keys = NULL;
    int32_t *order = NULL;
    uint8_t *kind = NULL;
    if (rows_of(&rows, &n) < 0) goto done;
    if (bits < 8 || bits > 32 || ta.len != ((Py_ssize_t)2 << bits) || tb.len != ta.len
            || pv.len % 8) {
        PyErr_SetString(PyExc_ValueError, "bad filter tables or proven array");
        goto done;
    }
    if (budget < 0) budget = 0;
    if (budget > n) budget = n;
    keys = malloc(sizeof(uint64_t) * (size_t)(n ? n : 1));
    order = malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    kind = malloc((size_t)(n ? n : 1));
    if (!keys || !order || !kind) { PyErr_NoMemory(); goto done; }
    {
        const uint8_t *r = rows.buf;
        const uint16_t *a = ta.buf;
        uint16_t *b = tb.buf;
        const uint64_t *proven = pv.buf;
        Py_ssize_t nproven = pv.len / 8, counts[3] = {0, 0, 0}, starts[3];
        for (i = 0; i < n; i++) {
            const uint8_t *row = r + i * FRAME_LEN;
            uint64_t k = row_key(row, bits);
            uint64_t slot = k >> 16;
            uint16_t tag = (uint16_t)(k & 0xFFFF);
            keys[i] = k;
            if (a[slot] == tag || b[slot] == tag) kind[i] = 0;  /* a retransmission */
            else if (nproven && is_proven(proven, nproven, be32(row + 26))) kind[i] = 1;
            else kind[i] = 2;
            counts[kind[i]]++;
        }
        starts[0] = 0; starts[1] = counts[0]; starts[2] = counts[0] + counts[1];
        for (i = n - 1; i >= 0; i--)  /* newest first within each kind */
            order[starts[kind[i]]++] = (int32_t)i;
        Py_ssize_t resent_kept = counts[0] < budget ? counts[0] : budget;
        Py_ssize_t proven_kept = counts[1] < budget - resent_kept ? counts[1] : budget - resent_kept;
        for (i = budget; i < n; i++) {  /* the shed rows, remembered in that order */
            uint64_t k = keys[order[i]];
            b[k >> 16] = (uint16_t)(k & 0xFFFF);
        }
        /* keep ascending: mark, then collect */
        memset(kind, 0, (size_t)n);
        for (i = 0; i < budget; i++) kind[order[i]] = 1;
        PyObject *keep = PyBytes_FromStringAndSize(NULL, (Py_ssize_t)(budget * 4));
        if (!keep) goto done;
        int32_t *out = (int32_t *)PyBytes_AS_STRING(keep);
        Py_ssize_t j = 0;
        for (i = 0; i < n; i++) if (kind[i]) out[j++] = (int32_t)i;
        result = Py_BuildValue("Nnn", keep, resent_kept, proven_kept);
    }
done:
    free(keys); free(order); free(kind);
    PyBuffer_Release(&rows); PyBuffer_Release(&ta); PyBuffer_Release(&tb);
    PyBuffer_Release(&pv);
    return result;
}

static PyObject *
syn_shape_ok(PyObject *self, PyObject *args)
{
    Py_buffer rows, trusted, expect, care, ours;
    Py_ssize_t n, i;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*", &rows, &trusted, &expect, &care, &ours))
        return NULL;
    if (rows_of(&rows, &n) < 0) goto done;
    if (trusted.len != n || expect.len != FRAME_LEN || care.len != FRAME_LEN || ours.len % 4) {
        PyErr_SetString(PyExc_ValueError, "shape_ok: bad argument sizes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, n);
    if (!result) goto done;
    {
        uint8_t *ok = (uint8_t *)PyBytes_AS_STRING(result);
        const uint8_t *e = expect.buf, *c = care.buf, *t = trusted.buf, *o = ours.buf;
        Py_ssize_t nours = ours.len / 4;
        for (i = 0; i < n; i++) {
            const uint8_t *r = (const uint8_t *)rows.buf + i * FRAME_LEN;
            int good = 1;
            for (int k = 0; k < FRAME_LEN && good; k++)
                if ((r[k] ^ e[k]) & c[k]) good = 0;
            if (good && (r[20] & 0x3F)) good = 0;  /* no fragment offset, no MF */
            if (good && word_sum(r, 14, 34) % 0xFFFF) good = 0;  /* RFC 791 checksum */
            uint32_t src = be32(r + 26);
            if (good && (r[26] >= 224 || src == 0)) good = 0;
            for (Py_ssize_t k = 0; good && k < nours; k++)
                if (src == be32(o + 4 * k)) good = 0;
            if (good && !t[i]) {  /* RFC 9293 3.1: pseudo-header + segment */
                uint64_t pseudo = (src >> 16) + (src & 0xFFFF) + word_sum(r, 30, 34) + 6 + 40;
                if ((pseudo + word_sum(r, 34, 74)) % 0xFFFF) good = 0;
            }
            ok[i] = (uint8_t)good;
        }
    }
done:
    PyBuffer_Release(&rows); PyBuffer_Release(&trusted); PyBuffer_Release(&expect);
    PyBuffer_Release(&care); PyBuffer_Release(&ours);
    return result;
}

static PyObject *
syn_cookie_inputs(PyObject *self, PyObject *args)
{
    Py_buffer rows;
    unsigned long long count;
    Py_ssize_t n, i;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*K", &rows, &count))
        return NULL;
    if (rows_of(&rows, &n) < 0) goto done;
    result = PyBytes_FromStringAndSize(NULL, n * 16);
    if (!result) goto done;
    {
        uint8_t *out = (uint8_t *)PyBytes_AS_STRING(result);
        for (i = 0; i < n; i++) {
            const uint8_t *r = (const uint8_t *)rows.buf + i * FRAME_LEN;
            uint8_t *p = out + i * 16;
            memcpy(p, r + 26, 8);       /* saddr, daddr */
            memcpy(p + 8, r + 34, 4);   /* sport, dport */
            put32(p + 12, (uint32_t)count);
        }
    }
done:
    PyBuffer_Release(&rows);
    return result;
}

static PyObject *
syn_answer(PyObject *self, PyObject *args)
{
    Py_buffer rows, hashes, idents, prefix, address;
    unsigned long long count, now_ms, local_sum;
    unsigned int ttl, window, mss, ws;
    Py_ssize_t n, i;
    PyObject *result = NULL;
    (void)self;
    if (!PyArg_ParseTuple(args, "y*y*y*y*y*KKKIIII", &rows, &hashes, &idents, &prefix, &address,
                          &count, &now_ms, &local_sum, &ttl, &window, &mss, &ws))
        return NULL;
    if (rows_of(&rows, &n) < 0) goto done;
    if (hashes.len != n * 8 || idents.len != n * 2 || prefix.len != 14 || address.len != 4) {
        PyErr_SetString(PyExc_ValueError, "answer: bad argument sizes");
        goto done;
    }
    result = PyBytes_FromStringAndSize(NULL, n * FRAME_LEN);
    if (!result) goto done;
    {
        uint8_t *outall = (uint8_t *)PyBytes_AS_STRING(result);
        const uint8_t *h = hashes.buf, *id = idents.buf, *our = address.buf;
        uint32_t ours = be32(our);
        const uint64_t opt_const = 0x0204 + 0x0402080A + 0x01030300;
        uint64_t tcp_const = local_sum + 6 + 40 + ((0xA012ull << 16) | window) + opt_const
                             + mss + ws;
        uint64_t ip_const = 0x4500 + 60 + 0x4000 + ((uint64_t)ttl << 8) + 6 + (ours >> 16)
                            + (ours & 0xFFFF);
        for (i = 0; i < n; i++) {
            const uint8_t *r = (const uint8_t *)rows.buf + i * FRAME_LEN;
            uint8_t *out = outall + i * FRAME_LEN;
            const uint8_t *hp = h + i * 8;
            uint64_t h1 = be32(hp), h2 = be32(hp + 4);
            uint64_t src = be32(r + 26), sport = be16(r + 34), dport = be16(r + 36);
            uint64_t seq = be32(r + 38), peer_mss = be16(r + 56);
            uint64_t index = (peer_mss >= 1300) + (peer_mss >= 1440) + (peer_mss >= 1460);
            uint64_t cookie = (h1 + seq + (count << COOKIE_BITS) + ((h2 + index) & COOKIE_MASK))
                              & 0xFFFFFFFFull;
            uint64_t ts_now = (now_ms + ((cookie * 2654435761ull) & 0xFFFFFFFFull))
                              & 0xFFFFFFFFull;
            uint64_t wscale = r[73] < 14 ? r[73] : 14;
            uint64_t ts = (ts_now & (~(uint64_t)TS_MASK & 0xFFFFFFFFull)) | wscale | TS_SACK;
            if (ts > ts_now) ts = (ts - (1u << TS_BITS)) & 0xFFFFFFFFull;
            uint64_t peer_tsval = be32(r + 62);
            uint64_t ack = (seq + 1) & 0xFFFFFFFFull;
            uint64_t total = tcp_const + src + ((dport << 16) | sport) + cookie + ack + ts
                             + peer_tsval;
            uint64_t s = total % 0xFFFF;
            uint32_t tcp_csum = s ? (uint32_t)(0xFFFF - s) : 0;
            uint32_t ident = be16(id + 2 * i);
            s = (ip_const + (src >> 16) + (src & 0xFFFF) + ident) % 0xFFFF;
            uint32_t ip_csum = s ? (uint32_t)(0xFFFF - s) : 0;
            memcpy(out, prefix.buf, 14);
            static const uint8_t iph[10] = {0x45, 0, 0, 60, 0, 0, 0x40, 0, 0, 6};
            memcpy(out + 14, iph, 10);
            out[22] = (uint8_t)ttl;
            put16(out + 18, ident);
            put16(out + 24, ip_csum);
            memcpy(out + 26, our, 4);
            memcpy(out + 30, r + 26, 4);
            memcpy(out + 34, r + 36, 2);
            memcpy(out + 36, r + 34, 2);
            put32(out + 38, (uint32_t)cookie);
            put32(out + 42, (uint32_t)ack);
            out[46] = 0xA0;
            out[47] = 0x12;
            put16(out + 48, window);
            put16(out + 50, tcp_csum);
            out[52] = out[53] = 0;
            out[54] = 2; out[55] = 4; put16(out + 56, mss);
            out[58] = 4; out[59] = 2; out[60] = 8; out[61] = 10;
            put32(out + 62, (uint32_t)ts);
            memcpy(out + 66, r + 62, 4);
            out[70] = 1; out[71] = 3; out[72] = 3; out[73] = (uint8_t)ws;
        }
    }
done:
    PyBuffer_Release(&rows); PyBuffer_Release(&hashes); PyBuffer_Release(&idents);
    PyBuffer_Release(&prefix); PyBuffer_Release(&address);
    return result;
}

/* ring_shed(ring, slot_size, nslots, head, limit, budget, pkttype_off,
 *           trusted_bits, table_a, table_b, bits, proven[, lanes_only])
 *   -> (rows, trusted, taken, odd, resent_kept, proven_kept)
 *
 * AfPacketDevice.read_fixed(FRAME_LEN, limit) followed by shed(rows,
 * budget, ...), on a TPACKET_V2 receive ring in place: the ready slots from
 * ``head`` on (wrapping at ``nslots``), at most ``limit``, stopping before
 * the first slot that is not a whole FRAME_LEN-byte incoming frame (``odd``
 * is then 1: the caller reads it the general way).  Only the ``budget``
 * kept rows are copied out (``rows``, ascending ring order, and their
 * ``trusted`` flags: tp_status & trusted_bits); the shed ones' fingerprints
 * go into ``table_b`` in shed order, as shed does; every slot taken is
 * handed back to the kernel (tp_status = TP_STATUS_KERNEL).  A flood's SYNs
 * are never copied: reading a wakeup's thousands of rows into an array
 * only to drop most of them was about a quarter of the SYN channel's CPU.
 * ``lanes_only``: keep only retransmissions and proven sources (at most
 * ``budget``) and shed every other row (a wakeup over its CPU share). */
static PyObject *
syn_ring_shed(PyObject *self, PyObject *args)
{
    Py_buffer ring, ta, tb, pv;
    Py_ssize_t slot_size, nslots, head, limit, budget, pkt_off, i;
    unsigned int trusted_bits;
    int bits;
    PyObject *result = NULL;
    (void)self;
    int lanes_only = 0;
    if (!PyArg_ParseTuple(args, "w*nnnnnnIw*w*iy*|p", &ring, &slot_size, &nslots, &head,
                          &limit, &budget, &pkt_off, &trusted_bits, &ta, &tb, &bits, &pv,
                          &lanes_only))
        return NULL;
    uint64_t *keys = NULL;
    int32_t *order = NULL;
    uint8_t *kind = NULL;
    uint32_t *srcs = NULL;
    if (bits < 8 || bits > 32 || ta.len != ((Py_ssize_t)2 << bits) || tb.len != ta.len
            || pv.len % 8) {
        PyErr_SetString(PyExc_ValueError, "bad filter tables or proven array");
        goto done;
    }
    if (slot_size < 64 || nslots < 1 || ring.len < slot_size * nslots || head < 0
            || head >= nslots || pkt_off < 0 || pkt_off >= slot_size) {
        PyErr_SetString(PyExc_ValueError, "ring_shed: bad ring geometry");
        goto done;
    }
    if (limit > nslots) limit = nslots;
    if (limit < 0) limit = 0;
    keys = malloc(sizeof(uint64_t) * (size_t)(limit ? limit : 1));
    order = malloc(sizeof(int32_t) * (size_t)(limit ? limit : 1));
    kind = malloc((size_t)(limit ? limit : 1));
    srcs = malloc(sizeof(uint32_t) * (size_t)(limit ? limit : 1));
    if (!keys || !order || !kind || !srcs) { PyErr_NoMemory(); goto done; }
    {
        uint8_t *base = ring.buf;
        const uint16_t *a = ta.buf;
        uint16_t *b = tb.buf;
        const uint64_t *proven = pv.buf;
        Py_ssize_t nproven = pv.len / 8, counts[3] = {0, 0, 0}, starts[3], n = 0;
        int odd = 0;
        /* pass 1: the ready whole frames and their keys (the slots ahead
         * prefetched: a flood's ring is far bigger than the caches) */
        for (n = 0; n < limit; n++) {
            uint8_t *slot = base + ((head + n) % nslots) * slot_size;
            uint8_t *ahead = base + ((head + n + 4) % nslots) * slot_size;
            __builtin_prefetch(ahead);
            __builtin_prefetch(ahead + 64);
            uint32_t status = __atomic_load_n((uint32_t *)slot, __ATOMIC_ACQUIRE);
            if (!(status & 1u)) break;  /* TP_STATUS_USER */
            uint32_t tp_len = ((uint32_t *)slot)[1], snaplen = ((uint32_t *)slot)[2];
            uint32_t mac = ((uint16_t *)slot)[6];
            if (tp_len != FRAME_LEN || snaplen != FRAME_LEN || slot[pkt_off] == 4  /* OUTGOING */
                    || mac + FRAME_LEN > (uint32_t)slot_size) {
                odd = 1;
                break;
            }
            const uint8_t *row = slot + mac;
            keys[n] = row_key(row, bits);
            srcs[n] = be32(row + 26);
        }
        /* pass 2: which lane, the filter slots ahead prefetched */
        for (i = 0; i < n; i++) {
            if (i + 8 < n) {
                __builtin_prefetch(a + (keys[i + 8] >> 16));
                __builtin_prefetch(b + (keys[i + 8] >> 16));
            }
            uint64_t k = keys[i];
            uint64_t at = k >> 16;
            uint16_t tag = (uint16_t)(k & 0xFFFF);
            if (a[at] == tag || b[at] == tag) kind[i] = 0;  /* a retransmission */
            else if (nproven && is_proven(proven, nproven, srcs[i])) kind[i] = 1;
            else kind[i] = 2;
            counts[kind[i]]++;
        }
        if (budget < 0) budget = 0;
        if (budget > n) budget = n;
        if (lanes_only && budget > counts[0] + counts[1]) budget = counts[0] + counts[1];
        starts[0] = 0; starts[1] = counts[0]; starts[2] = counts[0] + counts[1];
        for (i = n - 1; i >= 0; i--)  /* newest first within each kind */
            order[starts[kind[i]]++] = (int32_t)i;
        Py_ssize_t resent_kept = counts[0] < budget ? counts[0] : budget;
        Py_ssize_t proven_kept = counts[1] < budget - resent_kept ? counts[1] : budget - resent_kept;
        for (i = budget; i < n; i++) {  /* the shed rows, remembered in that order */
            uint64_t k = keys[order[i]];
            b[k >> 16] = (uint16_t)(k & 0xFFFF);
        }
        memset(kind, 0, (size_t)n);
        for (i = 0; i < budget; i++) kind[order[i]] = 1;
        PyObject *rows = PyBytes_FromStringAndSize(NULL, budget * FRAME_LEN);
        PyObject *flags = rows ? PyBytes_FromStringAndSize(NULL, budget) : NULL;
        if (!rows || !flags) { Py_XDECREF(rows); goto done; }
        uint8_t *out = (uint8_t *)PyBytes_AS_STRING(rows), *fl = (uint8_t *)PyBytes_AS_STRING(flags);
        Py_ssize_t j = 0;
        for (i = 0; i < n; i++) {
            uint8_t *slot = base + ((head + i) % nslots) * slot_size;
            if (kind[i]) {
                uint32_t mac = ((uint16_t *)slot)[6];
                memcpy(out + j * FRAME_LEN, slot + mac, FRAME_LEN);
                fl[j++] = (((uint32_t *)slot)[0] & trusted_bits) != 0;
            }
            __atomic_store_n((uint32_t *)slot, 0u, __ATOMIC_RELEASE);  /* TP_STATUS_KERNEL */
        }
        result = Py_BuildValue("NNnnnn", rows, flags, n, (Py_ssize_t)odd, resent_kept,
                               proven_kept);
    }
done:
    free(keys); free(order); free(kind); free(srcs);
    PyBuffer_Release(&ring); PyBuffer_Release(&ta); PyBuffer_Release(&tb);
    PyBuffer_Release(&pv);
    return result;
}

static PyMethodDef methods[] = {
    {"ring_shed", syn_ring_shed, METH_VARARGS,
     "read_fixed + shed on the receive ring in place (only the kept rows copied)"},
    {"shed", syn_shed, METH_VARARGS, "SynBatch._shed's order and filter writes"},
    {"shape_ok", syn_shape_ok, METH_VARARGS, "SynBatch._shape_ok per row (bytes of 0/1)"},
    {"cookie_inputs", syn_cookie_inputs, METH_VARARGS, "16-byte cookie hash inputs per row"},
    {"answer", syn_answer, METH_VARARGS, "SYN-ACK rows for SynBatch._answer"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_synbatch", "C steps of ustack.driver.syn_batch", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__synbatch(void)
{
    return PyModule_Create(&module);
}
