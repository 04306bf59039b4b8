"""The SYN channel's batch path: a whole ring's worth of flood SYNs answered
with cookie SYN-ACKs by array arithmetic (numpy), Python touching each SYN
only for one hash call and one table lookup (issue 13).

Under a SYN flood nearly every frame on the SYN channel is a 74-byte
Ethernet + IPv4 + TCP SYN in Linux's option layout (``mss, sackOK, TS, nop,
wscale``) from a routed source, to a listener whose SYN queue is full.  For
rows of that shape :meth:`SynBatch.process` does at once, over the array,
what the plain path does per frame (``IpLayer.receive`` -> ``_ip_input`` ->
``TcpTable.ip_input`` -> ``_syn_flood_path`` -> ``IpLayer.send``): the same
checks (Ethernet destination and type; IPv4 version, length, fragment,
protocol, header checksum, destination and source address rules; the TCP
checksum of untrusted frames; flags, data offset and option layout), the
same cookie (:mod:`ustack.tcp.syncookies`: :func:`hash_input`,
:meth:`CookieJar.digest`, :func:`cookie_of`, :func:`encode_timestamp` and
``ts_val``, spelled over arrays), the same counters, and the same SYN-ACK
bytes (IP identification from the IP layer's counter, in order).
tests/unit/test_syn_batch.py compares both paths byte for byte.

Every row that is not of that shape, or whose answer needs anything but the
gateway's cached Ethernet header (an on-link source, an unresolved
gateway), or whose listener is not answering with cookies, or that matches
a connection or request sock, is handed back to go the plain path.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np

from ustack.tcp.listener import syn_window
from ustack.tcp.syncookies import COOKIE_BITS, COOKIE_MASK, TS_MASK, TS_SACK, minute

if TYPE_CHECKING:
    from ustack.driver.tcp_table import TcpTable
    from ustack.net.ipv4 import IpLayer

#: Ethernet (14) + IPv4 without options (20) + TCP with Linux's SYN options (40)
FRAME_LEN = 74
_U32 = 0xFFFFFFFF
#: the SYN's option bytes at 54.. that are fixed (kind, length), by offset
_OPTION_BYTES = ((54, 2), (55, 4), (58, 4), (59, 2), (60, 8), (61, 10), (70, 1), (71, 3),
                 (72, 3))
#: constant option words of our SYN-ACK (as tcp_table's fast path)
_SYNACK_OPT_CONST = 0x0204 + 0x0402080A + 0x01030300
_PSEUDO_TCP_SYNACK = 6 + 40


def _fixed_bytes(mac: bytes, address: bytes) -> tuple[Any, Any]:
    """(offsets, values) of every byte a flood SYN to ``mac``/``address`` must
    have: Ethernet destination and type; IPv4 version/IHL, total length 60,
    no fragment offset's low byte, protocol 6, destination; TCP data offset
    10 words and flags SYN only; the option kinds and lengths."""
    fixed = {i: b for i, b in enumerate(mac)}
    fixed.update({12: 0x08, 13: 0x00, 14: 0x45, 16: 0, 17: 60, 21: 0, 23: 6, 46: 0xA0,
                  47: 0x02})
    fixed.update({30 + i: b for i, b in enumerate(address)})
    fixed.update(dict(_OPTION_BYTES))
    where = np.array(sorted(fixed), dtype=np.intp)
    return where, np.array([fixed[i] for i in sorted(fixed)], dtype=np.uint8)


def _be16(rows: Any, at: int) -> Any:
    return (rows[:, at].astype(np.uint64) << 8) | rows[:, at + 1]


def _be32(rows: Any, at: int) -> Any:
    r = rows[:, at:at + 4].astype(np.uint64)
    return (r[:, 0] << 24) | (r[:, 1] << 16) | (r[:, 2] << 8) | r[:, 3]


def _word_sum(rows: Any, start: int, stop: int) -> Any:
    """Sum of the big-endian 16-bit words of ``rows[:, start:stop]``."""
    return rows[:, start:stop].view(">u2").sum(axis=1, dtype=np.uint64)


def _put32(out: Any, at: int, values: Any) -> None:
    out[:, at:at + 4] = values.astype(">u4").view(np.uint8).reshape(-1, 4)


def _put16(out: Any, at: int, values: Any) -> None:
    out[:, at:at + 2] = values.astype(">u2").view(np.uint8).reshape(-1, 2)


class SynBatch:
    """Answers flood SYNs in batches for one stack (its IP layer and TCP table)."""

    def __init__(self, ip: IpLayer, table: TcpTable,
                 transmit_rows: Callable[[Any], None]) -> None:
        self.ip = ip
        self.table = table
        #: sends the rows of an ``(n, 74)`` uint8 array as frames
        #: (``AfPacketDevice.send_fixed``)
        self.transmit_rows = transmit_rows
        self._template: tuple[Any, Any, Any] | None = None
        #: rows answered here, and rows handed back to the plain path
        self.answered = 0
        self.handed_back = 0

    def process(self, rows: Any, trusted: Any, now: float) -> list[tuple[bytes, bool]]:
        """Answer every row of ``rows`` (``(n, 74)`` uint8 frames, ``trusted``
        their checksum flags) that is a flood SYN; return the others as
        ReceivedFrames for ``IpLayer.receive``."""
        n = len(rows)
        if n == 0:
            return []
        ip = self.ip
        table = self.table
        ok = self._shape_ok(rows, trusted)
        gateway = ip.routes.gateway
        entry = ip._prefix.get(gateway) if gateway is not None else None
        if entry is None or ip._clock() >= entry[1] or table._closed:  # as IpLayer.send
            ok[:] = False
        cfg = table.config
        mode = cfg.syncookies
        if not mode or not (cfg.timestamps and cfg.sack and cfg.window_scaling):
            ok[:] = False
        src = _be32(rows, 26)
        sport = _be16(rows, 34)
        dport = _be16(rows, 36)
        if ok.any():
            # routed sources only: on-link ones need their own neighbour entry
            mask = ip.routes._mask
            ok &= (src & mask) != ip.routes._net
        listeners = table._listeners
        if ok.any():
            for port in np.unique(dport[ok]).tolist():
                listener = listeners.get(port)
                if listener is None or listener.accept_queue_full or (
                        mode != 2 and not listener.syn_queue_full):
                    ok &= dport != port
        fast = np.flatnonzero(ok)
        if len(fast):
            fast = self._not_in_tables(rows, fast, src, sport, dport)
        back = np.ones(n, dtype=bool)
        if len(fast):
            back[fast] = False
            assert entry is not None
            self._answer(rows[fast], src[fast], sport[fast], dport[fast], entry[0], now)
        slow = np.flatnonzero(back).tolist()
        self.handed_back += len(slow)
        if not slow:
            return []
        flags = trusted.tolist()
        return [(rows[i].tobytes(), bool(flags[i])) for i in slow]

    def _shape_ok(self, rows: Any, trusted: Any) -> Any:
        """The checks of ``IpLayer.receive``/``_ip_input`` and of
        ``TcpTable._syn_flood_path``'s layout test, per row."""
        ip = self.ip
        template = self._template
        if template is None or template[0] != (ip.mac, ip.address):
            template = self._template = ((ip.mac, ip.address), *_fixed_bytes(ip.mac, ip.address))
        _, where, expect = template
        ok = (rows[:, where] == expect).all(axis=1)
        ok &= (rows[:, 20] & 0x3F) == 0  # no fragment offset, no MF
        ok &= _word_sum(rows, 14, 34) % 0xFFFF == 0  # RFC 791 header checksum
        src = _be32(rows, 26)
        ok &= (rows[:, 26] < 224) & (src != 0)
        for ours in ip._ours:
            ok &= src != int.from_bytes(ours, "big")
        # RFC 9293 3.1: pseudo-header + segment sums to 0 mod 0xFFFF
        if not trusted.all():
            pseudo = (src >> 16) + (src & 0xFFFF) + (_word_sum(rows, 30, 34) + 6 + 40)
            ok &= trusted | ((pseudo + _word_sum(rows, 34, 74)) % 0xFFFF == 0)
        result: Any = ok
        return result

    def _not_in_tables(self, rows: Any, fast: Any, src: Any, sport: Any, dport: Any) -> Any:
        """``fast`` without the rows whose 4-tuple has a connection or a
        request sock (those take the plain path, as ``_syn_flood_path``).
        The rows whose source address has any are looked up one by one."""
        table = self.table
        conns = table._conns
        listeners = table._listeners
        ports = np.unique(dport[fast]).tolist()
        if len(conns) + sum(len(listeners[p].requests) for p in ports) > 4 * len(fast):
            suspects = np.arange(len(fast))  # big tables: look every row up
        else:
            known = {k[1] for k in conns}
            for port in ports:
                known.update(k[1] for k in listeners[port].requests)
            if not known:
                return fast
            known_src = np.frombuffer(b"".join(known), dtype=">u4").astype(np.uint64)
            suspects = np.flatnonzero(np.isin(src[fast], known_src))
        if not len(suspects):
            return fast
        drop = []
        for j in suspects.tolist():
            i = int(fast[j])
            key = (int(dport[i]), rows[i, 26:30].tobytes(), int(sport[i]))
            if key in conns or key in listeners[key[0]].requests:
                drop.append(j)
        result: Any = np.delete(fast, drop) if drop else fast
        return result

    def _answer(self, rows: Any, src: Any, sport: Any, dport: Any, prefix: bytes,
                now: float) -> None:
        ip = self.ip
        table = self.table
        cfg = table.config
        m = len(rows)
        count = minute(now)
        # the cookie: SipHash of hash_input(saddr, daddr, sport, dport, count),
        # one pass over the whole array
        inputs = np.empty((m, 16), dtype=np.uint8)
        inputs[:, 0:4] = rows[:, 26:30]
        inputs[:, 4:8] = rows[:, 30:34]
        inputs[:, 8:10] = rows[:, 34:36]
        inputs[:, 10:12] = rows[:, 36:38]
        inputs[:, 12:16] = np.frombuffer(count.to_bytes(4, "big"), dtype=np.uint8)
        words = inputs.view("<u8")
        hashes = table._cookies.hash(words[:, 0], words[:, 1])
        h1 = hashes >> np.uint64(32)
        h2 = hashes & np.uint64(_U32)
        seq = _be32(rows, 38)
        mss = _be16(rows, 56)
        index = ((mss >= 1300).astype(np.uint64) + (mss >= 1440) + (mss >= 1460))
        cookie = (h1 + seq + np.uint64(count << COOKIE_BITS)
                  + ((h2 + index) & np.uint64(COOKIE_MASK))) & np.uint64(_U32)
        # the TSval carrying wscale and SACK (encode_timestamp of ts_val(cookie, now))
        ts_now = (np.uint64(int(now * 1000)) + ((cookie * np.uint64(2654435761))
                                                 & np.uint64(_U32))) & np.uint64(_U32)
        options = np.minimum(rows[:, 73], 14).astype(np.uint64) | np.uint64(TS_SACK)
        ts = (ts_now & np.uint64(~TS_MASK & _U32)) | options
        ts = np.where(ts > ts_now, (ts - np.uint64(1 << 6)) & np.uint64(_U32), ts)
        peer_tsval = _be32(rows, 62)
        ack = (seq + np.uint64(1)) & np.uint64(_U32)
        window = syn_window(cfg)
        ws = cfg.offered_wscale
        tcp_total = (np.uint64(table._local_sum + _PSEUDO_TCP_SYNACK + (0xA012 << 16 | window)
                               + _SYNACK_OPT_CONST + cfg.mss + ws)
                     + src + (dport << np.uint64(16) | sport) + cookie + ack + ts + peer_tsval)
        s = tcp_total % np.uint64(0xFFFF)
        tcp_csum = np.where(s != 0, np.uint64(0xFFFF) - s, np.uint64(0))
        # IPv4: identification from the IP layer's counter, in order (as send)
        idents = np.fromiter(islice(ip._ident, m), dtype=np.uint64, count=m) & np.uint64(0xFFFF)
        ttl = ip.ttl
        our = int.from_bytes(ip.address, "big")
        ip_const = 0x4500 + 60 + 0x4000 + (ttl << 8) + 6 + (our >> 16) + (our & 0xFFFF)
        s = (np.uint64(ip_const) + (src >> np.uint64(16)) + (src & np.uint64(0xFFFF))
             + idents) % np.uint64(0xFFFF)
        ip_csum = np.where(s != 0, np.uint64(0xFFFF) - s, np.uint64(0))
        out = np.empty((m, FRAME_LEN), dtype=np.uint8)
        out[:, 0:14] = np.frombuffer(prefix, dtype=np.uint8)
        out[:, 14:24] = np.frombuffer(bytes((0x45, 0, 0, 60, 0, 0, 0x40, 0, ttl, 6)),
                                      dtype=np.uint8)
        _put16(out, 18, idents)
        _put16(out, 24, ip_csum)
        out[:, 26:30] = np.frombuffer(ip.address, dtype=np.uint8)
        out[:, 30:34] = rows[:, 26:30]
        out[:, 34:36] = rows[:, 36:38]
        out[:, 36:38] = rows[:, 34:36]
        _put32(out, 38, cookie)
        _put32(out, 42, ack)
        out[:, 46] = 0xA0
        out[:, 47] = 0x12
        out[:, 48:50] = np.frombuffer(window.to_bytes(2, "big"), dtype=np.uint8)
        _put16(out, 50, tcp_csum)
        out[:, 52:54] = 0
        out[:, 54:58] = np.frombuffer(bytes((2, 4)) + cfg.mss.to_bytes(2, "big"),
                                      dtype=np.uint8)
        out[:, 58:62] = np.frombuffer(bytes((4, 2, 8, 10)), dtype=np.uint8)
        _put32(out, 62, ts)
        out[:, 66:70] = rows[:, 62:66]
        out[:, 70:74] = np.frombuffer(bytes((1, 3, 3, ws)), dtype=np.uint8)
        # the counters of the plain path, m times
        ip.frames_in += m
        ip.accepted += m
        ip.frames_out += m
        counters = table.counters
        counters["tcp_segs_in"] += m
        counters["tcp_segs_out"] += m
        mib = table.mib
        mib["TcpExtTCPReqQFullDoCookies"] += m
        mib["TcpExtSyncookiesSent"] += m
        listeners = table._listeners
        for port in np.unique(dport).tolist():
            listeners[port].cookie_sent_at = now
        self.answered += m
        self.transmit_rows(out)
