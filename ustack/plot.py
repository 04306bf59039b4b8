"""``ustack plot``: a Stevens time-sequence graph and cwnd / RTT panels from a
ustack trace (docs/trace.md), or the time-sequence graph of any TCP flow in
a pcap (the kernel's too).

matplotlib is an optional extra (``pip install 'ustack[plot]'``); without it
:class:`PlotUnavailable` says so.  Large traces are decimated: above
``max_segments`` the segments of each pixel column (``bins`` per figure) are
drawn as one span, so a 1 GB transfer (~740k segments) plots in seconds.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from ustack.trace.reader import Trace, read_trace

#: panels of a trace figure, top to bottom
PANELS = ("time-sequence", "cwnd", "rtt")
INSTALL_HINT = ("ustack plot needs matplotlib: pip install 'ustack[plot]' "
                "(or pip install matplotlib)")
_PCAP_MAGICS = (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1",
                b"\xa1\xb2\x3c\x4d", b"\x0a\x0d\x0d\x0a")
_U32 = 1 << 32


class PlotUnavailable(RuntimeError):
    """matplotlib (the ``plot`` extra) is not installed."""


class PlotError(ValueError):
    """The input cannot be plotted (no such connection, no TCP data, ...)."""


@dataclass
class PlotInfo:
    """What was drawn: the panels (titles) and how much of each series."""

    path: str
    panels: list[str]
    title: str
    counts: dict[str, int] = field(default_factory=dict)
    decimated: bool = False


def _mpl() -> tuple[Any, Any, Any]:
    try:
        import matplotlib
        import numpy
        from matplotlib.collections import LineCollection
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotUnavailable(INSTALL_HINT) from None
    matplotlib.use("Agg", force=False)
    return Figure, LineCollection, numpy


def is_pcap(path: str | os.PathLike[str]) -> bool:
    with open(path, "rb") as f:
        return f.read(4) in _PCAP_MAGICS


# ------------------------------------------------------------------ inputs


def trace_files(path: str | os.PathLike[str]) -> list[str]:
    """A trace file itself, or the ``*.jsonl`` files of a directory (sorted)."""
    p = os.fspath(path)
    if os.path.isdir(p):
        return sorted(os.path.join(p, n) for n in os.listdir(p) if n.endswith(".jsonl"))
    return [p]


def pcap_flows(path: str | os.PathLike[str]) -> list[Trace]:
    """Every TCP flow of a capture as a :class:`Trace` of its data direction
    (the one that carried more payload), largest first.  Retransmissions are
    segments ending at or below the highest sequence sent before; the
    receive window is scaled with the shift of the receiver's SYN."""
    import dpkt

    flows: dict[tuple[bytes, int, bytes, int], list[tuple[float, Any]]] = {}
    with open(path, "rb") as f:
        head = f.read(4)
        f.seek(0)
        reader: Any = (dpkt.pcapng.Reader(f) if head == b"\x0a\x0d\x0d\x0a"
                       else dpkt.pcap.Reader(f))
        link = reader.datalink()
        t0: float | None = None
        for ts, buf in reader:
            try:
                if link == dpkt.pcap.DLT_EN10MB:
                    ip = dpkt.ethernet.Ethernet(buf).data
                elif link == getattr(dpkt.pcap, "DLT_LINUX_SLL", 113):
                    ip = dpkt.sll.SLL(buf).data
                elif link in (getattr(dpkt.pcap, "DLT_RAW", 12), 101, 14):
                    ip = dpkt.ip.IP(buf)
                else:
                    raise PlotError(f"{os.fspath(path)}: link type {link} is not supported")
            except (dpkt.UnpackError, IndexError):
                continue
            if not isinstance(ip, dpkt.ip.IP) or not isinstance(ip.data, dpkt.tcp.TCP):
                continue
            if t0 is None:
                t0 = float(ts)
            tcp = ip.data
            key = (bytes(ip.src), tcp.sport, bytes(ip.dst), tcp.dport)
            flows.setdefault(key, []).append((float(ts) - t0, tcp))
    out: list[tuple[int, Trace]] = []
    seen: set[tuple[bytes, int, bytes, int]] = set()
    for key, segs in flows.items():
        if key in seen:
            continue
        rkey = (key[2], key[3], key[0], key[1])
        seen.update((key, rkey))
        rsegs = flows.get(rkey, [])
        fwd_bytes = sum(len(s.data) for _, s in segs)
        rev_bytes = sum(len(s.data) for _, s in rsegs)
        if rev_bytes > fwd_bytes:
            key, rkey, segs, rsegs, fwd_bytes = rkey, key, rsegs, segs, rev_bytes
        out.append((fwd_bytes, _flow_trace(key, segs, rsegs)))
    out.sort(key=lambda item: -item[0])
    return [tr for _, tr in out]


def _flow_trace(key: tuple[bytes, int, bytes, int], segs: list[tuple[float, Any]],
                rsegs: list[tuple[float, Any]]) -> Trace:
    import socket

    import dpkt

    tr = Trace()
    tr.header = {"local": f"{socket.inet_ntoa(key[0])}:{key[1]}",
                 "remote": f"{socket.inet_ntoa(key[2])}:{key[3]}", "source": "pcap"}
    shift = 0
    for _, seg in rsegs:
        if seg.flags & dpkt.tcp.TH_SYN:
            for kind, value in dpkt.tcp.parse_opts(seg.opts):
                if kind == dpkt.tcp.TCP_OPT_WSCALE and value:
                    shift = min(value[0], 14)
            break
    high: int | None = None
    for t, seg in segs:
        n = len(seg.data) + (1 if seg.flags & (dpkt.tcp.TH_SYN | dpkt.tcp.TH_FIN) else 0)
        rtx = 0
        if high is not None and n and ((seg.seq + n - high) & 0xFFFFFFFF) - 1 >= 1 << 31:
            rtx = 1  # ends at or below what was already sent
        end = (seg.seq + n) & 0xFFFFFFFF
        if high is None or ((end - high) & 0xFFFFFFFF) < 1 << 31:
            high = end
        tr.sent_t.append(t)
        tr.sent_seq.append(seg.seq)
        tr.sent_len.append(len(seg.data))
        tr.sent_rtx.append(rtx)
        tr.sent_flags.append("")
    for t, seg in rsegs:
        if not seg.flags & dpkt.tcp.TH_ACK:
            continue
        syn = bool(seg.flags & dpkt.tcp.TH_SYN)
        tr.recv_t.append(t)
        tr.recv_ack.append(seg.ack)
        tr.recv_win.append(seg.win if syn else seg.win << shift)  # SYN windows unscaled
        tr.recv_seq.append(seg.seq)
        tr.recv_len.append(len(seg.data))
        for kind, value in dpkt.tcp.parse_opts(seg.opts):
            if kind == dpkt.tcp.TCP_OPT_SACK:
                for i in range(0, len(value) - 7, 8):
                    tr.sack_t.append(t)
                    tr.sack_start.append(int.from_bytes(value[i:i + 4], "big"))
                    tr.sack_end.append(int.from_bytes(value[i + 4:i + 8], "big"))
    return tr


# ------------------------------------------------------------------ drawing


def _relative(np: Any, seq: Any, isn: int) -> Any:
    """Sequence numbers relative to ``isn``, unwrapped past 2^32."""
    rel = (seq.astype(np.int64) - isn) % _U32
    if len(rel) > 1:
        d = np.diff(rel)
        step = np.where(d < -(1 << 31), _U32, np.where(d > (1 << 31), -_U32, 0))
        rel[1:] += np.cumsum(step)
    return rel


def _spans(np: Any, t: Any, lo: Any, hi: Any, bins: int, t0: float,
           t1: float) -> tuple[Any, Any, Any]:
    """Decimate vertical spans: one (t, min lo, max hi) per time bin."""
    if len(t) == 0:
        return t, lo, hi
    width = (t1 - t0) or 1.0
    idx = np.minimum(((t - t0) / width * bins).astype(np.int64), bins - 1)
    starts = np.concatenate(([0], np.flatnonzero(np.diff(idx)) + 1))
    return (t[starts], np.minimum.reduceat(lo, starts), np.maximum.reduceat(hi, starts))


def _steps(np: Any, t: Any, y: Any, bins: int, t0: float, t1: float) -> tuple[Any, Any]:
    """Decimate a step line: the last value of each time bin (and its max)."""
    if len(t) == 0:
        return t, y
    width = (t1 - t0) or 1.0
    idx = np.minimum(((t - t0) / width * bins).astype(np.int64), bins - 1)
    ends = np.concatenate((np.flatnonzero(np.diff(idx)), [len(t) - 1]))
    return t[ends], y[ends]


def _segments(np: Any, t: Any, lo: Any, hi: Any) -> Any:
    seg = np.empty((len(t), 2, 2))
    seg[:, 0, 0] = t
    seg[:, 1, 0] = t
    seg[:, 0, 1] = lo
    seg[:, 1, 1] = hi
    return seg


def _draw_time_sequence(ax: Any, np: Any, LineCollection: Any, tr: Trace, info: PlotInfo,
                        max_segments: int, bins: int) -> None:
    t = np.frombuffer(tr.sent_t, dtype=np.float64) if len(tr.sent_t) else np.zeros(0)
    if len(t) == 0:
        raise PlotError("no segments sent in this connection: nothing to draw")
    isn = tr.sent_seq[0]
    seq = _relative(np, np.frombuffer(tr.sent_seq, dtype=np.int64), isn) if len(t) else t
    length = np.frombuffer(tr.sent_len, dtype=np.int64)
    rtx = np.frombuffer(tr.sent_rtx, dtype=np.int64).astype(bool)
    data = length > 0
    t0 = float(t[0])
    t_end = [float(t[-1])]
    if len(tr.recv_t):
        t_end.append(float(tr.recv_t[-1]))
    t1 = max(t_end)
    new = data & ~rtx
    old = data & rtx
    decimate = int(data.sum()) > max_segments
    info.decimated = decimate

    def spans(mask: Any) -> tuple[Any, Any, Any]:
        ts, lo, hi = t[mask], seq[mask], seq[mask] + length[mask]
        if decimate:
            return _spans(np, ts, lo, hi, bins, t0, t1)
        return ts, lo, hi

    ts, lo, hi = spans(new)
    ax.add_collection(LineCollection(_segments(np, ts, lo, hi), colors="#1f3b99",
                                     linewidths=0.8, label="data sent"))
    info.counts["data"] = int(new.sum())
    if old.any():
        ts, lo, hi = spans(old)
        ax.add_collection(LineCollection(_segments(np, ts, lo, hi), colors="#d62728",
                                         linewidths=1.2, label="retransmission"))
        ax.plot(ts, hi, linestyle="none", marker="x", markersize=3, color="#d62728")
    info.counts["retransmissions"] = int(old.sum())
    if len(tr.recv_t):
        rt = np.frombuffer(tr.recv_t, dtype=np.float64)
        ack = _relative(np, np.frombuffer(tr.recv_ack, dtype=np.int64), isn)
        # ACKs from before our ISN was acknowledged (the SYN-ACK's view) sit far away
        ok = ack <= (seq + length).max() + 1
        rt, ack = rt[ok], ack[ok]
        win = np.frombuffer(tr.recv_win, dtype=np.int64)[ok]
        rwin = ack + win
        if decimate:
            rt_a, ack = _steps(np, rt, ack, bins, t0, t1)
            _, rwin = _steps(np, rt, rwin, bins, t0, t1)
            rt = rt_a
        ax.step(rt, ack, where="post", color="#2ca02c", linewidth=0.9, label="ACK")
        ax.step(rt, rwin, where="post", color="#e6a700", linewidth=0.8, label="receive window")
        info.counts["acks"] = len(rt)
    if len(tr.sack_t):
        st = np.frombuffer(tr.sack_t, dtype=np.float64)
        s_lo = _relative(np, np.frombuffer(tr.sack_start, dtype=np.int64), isn)
        s_hi = s_lo + ((np.frombuffer(tr.sack_end, dtype=np.int64)
                        - np.frombuffer(tr.sack_start, dtype=np.int64)) % _U32)
        if decimate:
            st, s_lo, s_hi = _spans(np, st, s_lo, s_hi, bins, t0, t1)
        ax.add_collection(LineCollection(_segments(np, st, s_lo, s_hi), colors="#9467bd",
                                         linewidths=2.0, alpha=0.7, label="SACK blocks"))
        info.counts["sack"] = len(tr.sack_t)
    top = float((seq + length).max())
    ax.set_xlim(t0, t1 if t1 > t0 else t0 + 1e-3)
    ax.set_ylim(0, top * 1.05 + 1)
    ax.set_ylabel("sequence (bytes from ISN)")
    ax.set_title("time-sequence")
    ax.legend(loc="upper left", fontsize="x-small")
    ax.grid(True, alpha=0.3)


def _draw_series(ax: Any, np: Any, tr: Trace, keys: tuple[str, ...], scale: float,
                 unit: str, title: str, info: PlotInfo, bins: int) -> None:
    t = np.frombuffer(tr.cc_t, dtype=np.float64) if len(tr.cc_t) else np.zeros(0)
    drawn = 0
    for key in keys:
        column = tr.cc.get(key)
        if column is None or not len(column) or len(t) == 0:
            continue
        y = np.frombuffer(column, dtype=np.float64) * scale
        ts = t
        if key == "ssthresh":  # an unset ssthresh (huge) would flatten the panel
            cw = np.frombuffer(tr.cc["cwnd"], dtype=np.float64) * scale
            limit = 10 * np.nanmax(cw) if np.isfinite(cw).any() else np.inf
            y = np.where(y > limit, np.nan, y)
        if len(ts) > 4 * bins:
            ts, y = _steps(np, ts, y, 4 * bins, float(t[0]), float(t[-1]))
        if not np.isfinite(y).any():
            continue
        ax.step(ts, y, where="post", linewidth=0.9, label=key)
        drawn += 1
    for when, reason, _ in tr.recovery:
        ax.axvline(when, color="#d62728" if reason != "exit" else "#999999",
                   linewidth=0.5, alpha=0.5)
    ax.set_ylabel(unit)
    ax.set_title(title)
    if drawn:
        ax.legend(loc="upper left", fontsize="x-small")
    else:
        ax.text(0.5, 0.5, "no cc events in this trace", transform=ax.transAxes,
                ha="center", va="center", color="#777777")
    ax.grid(True, alpha=0.3)
    info.counts[title] = drawn


def plot(tr: Trace, out: str | os.PathLike[str], *, fmt: str | None = None,
         panels: tuple[str, ...] = PANELS, max_segments: int = 20_000, bins: int = 2000,
         title: str | None = None) -> PlotInfo:
    """Draw ``tr`` into ``out`` (PNG, or ``fmt="svg"``); returns what was drawn."""
    Figure, LineCollection, np = _mpl()
    if (fmt or os.fspath(out).rsplit(".", 1)[-1]) == "svg":
        max_segments = min(max_segments, 5000)  # every segment is an SVG element
    heights = {"time-sequence": 3, "cwnd": 1.3, "rtt": 1.3}
    # a fixed layout: constrained/tight layouts measure every artist (seconds
    # for a big trace)
    fig = Figure(figsize=(11, 3.2 + 1.9 * (len(panels) - 1) if len(panels) > 1 else 5.5))
    if len(panels) > 1:
        fig.subplots_adjust(left=0.08, right=0.98, top=0.93, bottom=0.07, hspace=0.25)
    else:
        fig.subplots_adjust(left=0.08, right=0.98, top=0.88, bottom=0.1)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False,
                        gridspec_kw={"height_ratios": [heights[p] for p in panels]})[:, 0]
    name = title or f"{tr.local} → {tr.remote}"
    info = PlotInfo(os.fspath(out), [], name)
    for ax, panel in zip(axes, panels, strict=True):
        if panel == "time-sequence":
            _draw_time_sequence(ax, np, LineCollection, tr, info, max_segments, bins)
        elif panel == "cwnd":
            _draw_series(ax, np, tr, ("cwnd", "ssthresh", "in_flight"), 1 / 1024, "KiB",
                         "cwnd", info, bins)
        elif panel == "rtt":
            _draw_series(ax, np, tr, ("srtt", "min_rtt", "rto"), 1e3, "ms", "rtt", info, bins)
        info.panels.append(panel)
    axes[-1].set_xlabel("time (s)")
    fig.suptitle(name + (" (decimated)" if info.decimated else ""), fontsize="medium")
    fig.savefig(out, format=fmt, dpi=110)
    return info


def plot_path(path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, *,
              conn: int = 0, fmt: str | None = None) -> PlotInfo:
    """``ustack plot``: a trace file, a trace directory (``conn``-th file) or a
    pcap (``conn``-th largest TCP flow)."""
    src = os.fspath(path)
    if not os.path.exists(src):
        raise PlotError(f"{src}: no such file or directory")
    if out is None:
        base = src.rstrip("/")
        out = f"{base}.{fmt or 'png'}"
    if not os.path.isdir(src) and is_pcap(src):
        flows = pcap_flows(src)
        if not flows:
            raise PlotError(f"{src}: no TCP flow in this capture")
        if not 0 <= conn < len(flows):
            raise PlotError(f"{src}: --conn {conn} out of range: {len(flows)} TCP flow(s)")
        tr = flows[conn]
        return plot(tr, out, fmt=fmt, panels=("time-sequence",),
                    title=f"{tr.local} → {tr.remote} (pcap)")
    files = trace_files(src)
    if not files:
        raise PlotError(f"{src}: no *.jsonl trace in this directory")
    if not 0 <= conn < len(files):
        raise PlotError(f"{src}: --conn {conn} out of range: {len(files)} trace(s)")
    try:
        tr = read_trace(files[conn])
    except (ValueError, KeyError) as exc:
        raise PlotError(f"{files[conn]}: not a ustack trace ({exc})") from None
    return plot(tr, out, fmt=fmt)


__all__ = ["PANELS", "PlotError", "PlotInfo", "PlotUnavailable", "is_pcap", "pcap_flows",
           "plot", "plot_path", "trace_files"]
