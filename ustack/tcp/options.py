"""Option negotiation on the handshake (RFC 9293 3.7.1 MSS, RFC 7323 window
scale and timestamps, RFC 2018 SACK-permitted).

Each option is in effect only when both SYNs carry it; a SYN-ACK echoes only
what the SYN offered.  A window-scale shift above 14 is used as 14 (RFC 7323
2.3, Linux logs and clamps).  Without an MSS option the peer's MSS is 536
(RFC 9293 3.7.1, RFC 1122).  A peer MSS below ``tcp_min_snd_mss`` (48) is
raised to it, as Linux does since the CVE-2019-11479 fix: RFC 9293 3.7.1 says
never to exceed the peer's MSS; a tiny MSS is a resource-exhaustion lever.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ustack.tcp.config import TcpConfig
from ustack.wire.tcp import TcpOptions

DEFAULT_MSS: Final = 536
MAX_WSCALE: Final = 14
TIMESTAMP_OPTION_LEN: Final = 12  # nop, nop, kind 8 len 10 (Linux's layout)


@dataclass(slots=True, init=False)
class Negotiated:
    """What the handshake settled.  (``__init__`` written out: the one a
    dataclass generates runs interpreted in the compiled build, once per
    handshake.)"""

    send_mss: int  # peer's MSS (clamped to ours, Linux-style)
    wscale_ok: bool
    snd_wscale: int  # shift applied to the windows the peer sends us
    rcv_wscale: int  # shift we apply to the windows we send
    sack_ok: bool
    ts_ok: bool

    def __init__(self, send_mss: int = DEFAULT_MSS, wscale_ok: bool = False,
                 snd_wscale: int = 0, rcv_wscale: int = 0, sack_ok: bool = False,
                 ts_ok: bool = False) -> None:
        self.send_mss = send_mss
        self.wscale_ok = wscale_ok
        self.snd_wscale = snd_wscale
        self.rcv_wscale = rcv_wscale
        self.sack_ok = sack_ok
        self.ts_ok = ts_ok


def syn_options(config: TcpConfig, ts_val: int) -> TcpOptions:
    """Options for our SYN: everything the config enables."""
    return TcpOptions(
        mss=config.mss,
        wscale=config.offered_wscale if config.window_scaling else None,
        sack_permitted=config.sack,
        timestamp=(ts_val, 0) if config.timestamps else None,
    )


def negotiate(config: TcpConfig, peer: TcpOptions) -> Negotiated:
    """Combine our config with the options of the peer's SYN (or SYN-ACK)."""
    n = Negotiated()
    peer_mss = peer.mss if peer.mss else DEFAULT_MSS
    # Linux never sends segments larger than its own advertised MSS either;
    # the clamp has a floor, tcp_min_snd_mss (Linux __tcp_mtu_to_mss: the
    # floor applies to the MSS without options; the timestamp option is
    # taken off after it, TcpConnection._take_syn)
    n.send_mss = max(min(peer_mss, config.mss), config.tcp_min_snd_mss)
    if config.window_scaling and peer.wscale is not None:
        n.wscale_ok = True
        n.snd_wscale = min(peer.wscale, MAX_WSCALE)
        n.rcv_wscale = config.offered_wscale
    n.sack_ok = config.sack and peer.sack_permitted
    n.ts_ok = config.timestamps and peer.timestamp is not None
    return n


def synack_options(config: TcpConfig, n: Negotiated, ts_val: int, ts_ecr: int) -> TcpOptions:
    """Options for our SYN-ACK: MSS always, the others only if the SYN had them."""
    return TcpOptions(
        mss=config.mss,
        wscale=n.rcv_wscale if n.wscale_ok else None,
        sack_permitted=n.sack_ok,
        timestamp=(ts_val, ts_ecr) if n.ts_ok else None,
    )
