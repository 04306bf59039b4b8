"""TCP codec (ustack.wire.tcp) cross-checked with dpkt, options included."""

from __future__ import annotations

import dpkt
from hypothesis import given
from hypothesis import strategies as st

from ustack.wire import tcp
from ustack.wire.checksum import fold, partial_sum, pseudo_header_sum

SRC, DST = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])
u32 = st.integers(0, 0xFFFFFFFF)
u16 = st.integers(0, 0xFFFF)

# the two shapes the stack sends: SYN options, and data-segment options
syn_options = st.builds(
    tcp.TcpOptions,
    mss=st.none() | u16,
    wscale=st.none() | st.integers(0, 14),
    sack_permitted=st.booleans(),
    timestamp=st.none() | st.tuples(u32, u32),
)
data_options = st.one_of(
    st.builds(tcp.TcpOptions, timestamp=st.tuples(u32, u32),
              sack_blocks=st.lists(st.tuples(u32, u32), max_size=3)),
    st.builds(tcp.TcpOptions, sack_blocks=st.lists(st.tuples(u32, u32), max_size=4)),
)
options = st.one_of(syn_options, data_options)


def _dpkt_options(raw: bytes) -> dict[int, bytes]:
    return {kind: bytes(value) for kind, value in dpkt.tcp.parse_opts(raw)}


@given(u16, u16, u32, u32, st.integers(0, 255), u16, u16, options, st.binary(max_size=200))
def test_ours_decoded_by_dpkt(sport: int, dport: int, seq: int, ack: int, flags: int, win: int,
                              urg: int, opts: tcp.TcpOptions, payload: bytes) -> None:
    seg = tcp.TcpSegment(sport, dport, seq, ack, flags, win, urg, opts, payload)
    raw = seg.encode(SRC, DST)
    d = dpkt.tcp.TCP(raw)
    assert (d.sport, d.dport, d.seq, d.ack, d.flags, d.win, d.urp) == (
        sport, dport, seq, ack, flags, win, urg)
    assert bytes(d.data) == payload
    total = pseudo_header_sum(SRC, DST, 6, len(raw)) + partial_sum(raw)
    assert fold(total) in (0, 0xFFFF)  # checksum verifies
    got = _dpkt_options(d.opts)
    assert (got.get(tcp.OPT_MSS) is not None) == (opts.mss is not None)
    if opts.mss is not None:
        assert int.from_bytes(got[tcp.OPT_MSS], "big") == opts.mss
    if opts.wscale is not None:
        assert got[tcp.OPT_WSCALE] == bytes([opts.wscale])
    assert (tcp.OPT_SACK_PERMITTED in got) == opts.sack_permitted
    if opts.timestamp is not None:
        ts = got[tcp.OPT_TIMESTAMP]
        assert (int.from_bytes(ts[:4], "big"), int.from_bytes(ts[4:], "big")) == opts.timestamp
    if opts.sack_blocks:
        blob = got[tcp.OPT_SACK]
        blocks = [(int.from_bytes(blob[i:i + 4], "big"), int.from_bytes(blob[i + 4:i + 8], "big"))
                  for i in range(0, len(blob), 8)]
        assert blocks == opts.sack_blocks
    back = tcp.TcpSegment.decode(raw)
    assert (back.src_port, back.seq, back.ack, back.flags, back.payload) == (
        sport, seq, ack, flags, payload)
    assert (back.options.mss, back.options.wscale, back.options.sack_permitted,
            back.options.timestamp, back.options.sack_blocks) == (
        opts.mss, opts.wscale, opts.sack_permitted, opts.timestamp, opts.sack_blocks)


@given(u16, u16, u32, u32, st.integers(0, 63), u16, st.none() | u16, st.none() | st.integers(0, 14),
       st.booleans(), st.none() | st.tuples(u32, u32), st.binary(max_size=100))
def test_we_decode_dpkt(sport: int, dport: int, seq: int, ack: int, flags: int, win: int,
                        mss: int | None, ws: int | None, sackok: bool,
                        ts: tuple[int, int] | None, payload: bytes) -> None:
    opts = b""
    if mss is not None:
        opts += bytes([2, 4]) + mss.to_bytes(2, "big")
    if sackok:
        opts += b"\x01\x01\x04\x02"
    if ts is not None:
        opts += b"\x01\x01\x08\x0a" + ts[0].to_bytes(4, "big") + ts[1].to_bytes(4, "big")
    if ws is not None:
        opts += bytes([1, 3, 3, ws])
    d = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq, ack=ack, flags=flags, win=win,
                     opts=opts, data=payload)
    d.off = 5 + len(opts) // 4
    seg = tcp.TcpSegment.decode(bytes(d))
    assert (seg.src_port, seg.dst_port, seg.seq, seg.ack, seg.flags, seg.window, seg.payload) == (
        sport, dport, seq, ack, flags, win, payload)
    assert (seg.options.mss, seg.options.wscale, seg.options.sack_permitted,
            seg.options.timestamp) == (mss, ws, sackok, ts)
