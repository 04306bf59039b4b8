"""Golden output of every ``ss`` view for a fixed set of records.

Regenerate after an intended change with ``USTACK_UPDATE_GOLDEN=1 pytest
tests/unit/test_diag_format.py`` and review the diff.  The layout rules were
checked against iproute2 ss 6.1 output on the kernel's own sockets (compact
rendering of a pipe): see test_layout_matches_kernel_ss.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from ustack.diag.fake import golden_records
from ustack.diag.filter import select
from ustack.diag.format import (
    FormatOptions,
    format_json,
    format_ms_timer,
    format_rate,
    format_summary,
    format_summary_json,
    format_table,
    single_state,
    summary_counts,
)
from ustack.diag.records import STATE_BITS, SocketRecord

GOLDEN = Path(__file__).parent / "golden" / "ss"

VIEWS: dict[str, FormatOptions] = {
    "tan": FormatOptions(numeric=True),
    "ta": FormatOptions(),
    "an_netid": FormatOptions(numeric=True, show_netid=True),
    "tanH": FormatOptions(numeric=True, header=False),
    "tano": FormatOptions(numeric=True, options=True),
    "tane": FormatOptions(numeric=True, options=True, extended=True),
    "tanm": FormatOptions(numeric=True, memory=True),
    "tani": FormatOptions(numeric=True, info=True),
    "tanoi": FormatOptions(numeric=True, options=True, info=True),
    "tai": FormatOptions(info=True),
    "tanp": FormatOptions(numeric=True, processes=True),
    "tanoiem": FormatOptions(numeric=True, options=True, extended=True, info=True, memory=True),
    "tanoiemO": FormatOptions(
        numeric=True, options=True, extended=True, info=True, memory=True, oneline=True
    ),
}


def _check(name: str, text: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("USTACK_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}; run with USTACK_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"output differs from {path}"


@pytest.mark.parametrize("view", sorted(VIEWS))
def test_view_matches_golden(view: str) -> None:
    _check(view, format_table(golden_records(), VIEWS[view]))


def test_single_state_drops_state_column() -> None:
    records = select(golden_records(), "state established")
    text = format_table(records, FormatOptions(numeric=True, show_state=False))
    _check("tan_state_established", text)
    assert not text.startswith("State")
    assert text.splitlines()[1].split() == ["0", "1448", "10.77.0.2:41234", "10.77.0.1:5001"]


def test_empty_table_is_header_only() -> None:
    # as ss 6.1 prints for an empty selection of two states
    text = format_table([], FormatOptions(numeric=True))
    assert text == "State Recv-Q Send-Q Local Address:Port Peer Address:PortProcess\n"
    assert format_table([], FormatOptions(header=False)) == ""


def test_summary_golden() -> None:
    text = format_summary(golden_records())
    _check("s", text)
    # as iproute2 ss computes it from /proc/net/sockstat: closed = alloc -
    # (inuse - tw), so the TIME-WAIT socket counts as closed; estab is the
    # kernel's CurrEstab (ESTABLISHED and CLOSE-WAIT)
    assert text.startswith("Total: 6\nTCP:   6 (estab 2, closed 1, orphaned 0, timewait 1)\n")
    assert "TCP\t  5         5         0" in text


def test_summary_counts_unconnected_and_timewait_as_closed() -> None:
    records = [
        SocketRecord("UNCONN", "10.77.0.2", 1, "0.0.0.0", 0, 0, 0),
        SocketRecord("TIME-WAIT", "10.77.0.2", 2, "10.77.0.1", 80, 0, 0),
        SocketRecord("TIME-WAIT", "10.77.0.2", 3, "10.77.0.1", 80, 0, 0),
        SocketRecord("ESTAB", "10.77.0.2", 4, "10.77.0.1", 80, 0, 0),
    ]
    counts = summary_counts(records)
    assert (counts["total"], counts["closed"], counts["timewait"], counts["inuse"]) == (4, 3, 2, 1)
    assert json.loads(format_summary_json(records))["tcp"]["closed"] == 3


JSON_VIEWS = {"j": FormatOptions(), "tanoiempj": VIEWS["tanoiem"]._replace(processes=True)}


@pytest.mark.parametrize("view", sorted(JSON_VIEWS))
def test_json_is_one_array_of_socket_objects(view: str) -> None:
    text = format_json(golden_records(), JSON_VIEWS[view])
    _check(view, text)
    objs = json.loads(text)
    assert isinstance(objs, list) and len(objs) == 6
    assert objs[1]["state"] == "ESTAB" and objs[1]["peer_port"] == 5001
    keys = set(objs[0])
    assert all(set(o) == keys for o in objs)  # the keys do not depend on the values
    if view == "j":
        assert keys == {"netid", "state", "recv_q", "send_q", "local_address", "local_port",
                        "peer_address", "peer_port"}
        return
    est, tw, syn = objs[1], objs[2], objs[5]
    # the text output's labels and units: ms, bit/s
    assert est["rtt"] == 0.412 and est["rttvar"] == 0.206 and est["rto"] == 204
    assert est["cwnd"] == 10 and est["ssthresh"] is None  # "infinite", as text omits it
    assert est["snd_wscale"] == 7 and est["lastsnd"] == 4 and est["minrtt"] == 0.301
    assert est["delivery_rate"] == 28_000_000 and est["send"] == 10 * 1448 * 8 / 0.000412
    assert est["ts"] is True and est["ecn"] is False and est["cong_alg"] == "reno"
    assert est["timer"] == {"name": "on", "expire_ms": 200, "retrans": 0}
    assert est["skmem"]["rb"] == 131072 and est["skmem"]["t"] == 1448
    assert est["users"] == [{"name": "python3", "pid": 4242, "fd": 2}]
    assert est["sk"] == "7f02" and est["shutdown"] == "<->"
    assert tw["timer"]["name"] == "timewait" and tw["shutdown"] is None
    assert objs[0]["timer"] is None
    assert syn["backoff"] == 2 and syn["timer"]["retrans"] == 2


def test_json_empty_and_non_finite() -> None:
    assert json.loads(format_json([])) == []
    odd = SocketRecord("ESTAB", "10.77.0.2", 1, "10.77.0.1", 2, 0, 0, srtt=float("inf"),
                       min_rtt=float("nan"))
    obj = json.loads(format_json([odd], FormatOptions(info=True)))[0]
    assert obj["rtt"] is None and obj["minrtt"] is None and obj["send"] == 0


def test_layout_matches_kernel_ss() -> None:
    """Byte-for-byte what ``ss -tan`` (iproute2 6.1) printed for these sockets."""
    records = [
        SocketRecord("LISTEN", "0.0.0.0", 2024, "0.0.0.0", 0, 0, 128),
        SocketRecord("LISTEN", "127.0.0.1", 8080, "0.0.0.0", 0, 1, 128),
        SocketRecord("FIN-WAIT-2", "127.0.0.1", 8080, "127.0.0.1", 41498, 0, 0),
        SocketRecord("ESTAB", "127.0.0.1", 41494, "127.0.0.1", 8080, 0, 0),
        SocketRecord("CLOSE-WAIT", "127.0.0.1", 41498, "127.0.0.1", 8080, 1, 0),
        SocketRecord("TIME-WAIT", "127.0.0.1", 41512, "127.0.0.1", 8080, 0, 0),
    ]
    expected = (
        "State      Recv-Q Send-Q Local Address:Port  Peer Address:Port Process\n"
        "LISTEN     0      128          0.0.0.0:2024       0.0.0.0:*           \n"
        "LISTEN     1      128        127.0.0.1:8080       0.0.0.0:*           \n"
        "FIN-WAIT-2 0      0          127.0.0.1:8080     127.0.0.1:41498       \n"
        "ESTAB      0      0          127.0.0.1:41494    127.0.0.1:8080        \n"
        "CLOSE-WAIT 1      0          127.0.0.1:41498    127.0.0.1:8080        \n"
        "TIME-WAIT  0      0          127.0.0.1:41512    127.0.0.1:8080        \n"
    )
    assert format_table(records, FormatOptions(numeric=True)) == expected
    # -H: widths from the rows alone
    assert format_table(records[1:3], FormatOptions(numeric=True, header=False)) == (
        "LISTEN     1      128    127.0.0.1:8080   0.0.0.0:*    \n"
        "FIN-WAIT-2 0      0      127.0.0.1:8080 127.0.0.1:41498\n"
    )


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (200, "200ms"),
        (1500, "1.500sec"),
        (59000, "59sec"),
        (59400, "59sec"),  # ss drops milliseconds above 9 s
        (9250, "9.250sec"),
        (65500, "1min5sec"),  # ss drops milliseconds once minutes are shown
        (605000, "10min"),  # and seconds above 9 minutes
        (60000, "1min"),
        (0, ""),
    ],
)
def test_timer_formatting_like_ss(ms: int, text: str) -> None:
    assert format_ms_timer(ms) == text


def test_rates_like_ss() -> None:
    assert format_rate(281165049.0, numeric=True) == "281165049"
    assert format_rate(281165049.0, numeric=False) == "281M"
    assert format_rate(2_500.0, numeric=False) == "2.5k"
    assert format_rate(17_476_265_624.0, numeric=False) == "17.5G"
    assert format_rate(999.0, numeric=False) == "999"


def test_info_order_and_zero_fields_omitted() -> None:
    text = format_table(golden_records()[1:2], VIEWS["tanoi"])
    info = text.splitlines()[2]
    assert info.startswith("\t ts sack reno wscale:7,7 rto:204 rtt:0.412/0.206 ato:40 mss:1448")
    order = [
        "wscale:", "rto:", "rtt:", "ato:", "mss:", "pmtu:", "rcvmss:", "advmss:", "cwnd:",
        "bytes_sent:", "bytes_acked:", "bytes_received:", "segs_out:", "segs_in:",
        "data_segs_out:", "data_segs_in:", "send ", "lastsnd:", "lastrcv:", "lastack:",
        "delivery_rate ", "delivered:", "unacked:", "rcv_space:", "rcv_ssthresh:", "minrtt:",
        "snd_wnd:", "rcv_wnd:",
    ]
    positions = [info.index(word) for word in order]
    assert positions == sorted(positions)
    absent_words = [" backoff:", " bytes_retrans:", " retrans:", " lost:", " notsent:"]
    absent_words.append(" ssthresh:")
    for absent in absent_words:
        assert absent not in info  # zero (or unset ssthresh): omitted


def test_shutdown_markers_and_timers() -> None:
    text = format_table(golden_records(), VIEWS["tane"])
    lines = {line.split()[0]: line.rstrip() for line in text.splitlines()[1:]}
    assert lines["ESTAB"].endswith("timer:(on,200ms,0) ino:2 sk:7f02 <->")
    assert lines["CLOSE-WAIT"].endswith("ino:4 sk:7f04 -->")
    assert lines["FIN-WAIT-2"].endswith("timer:(timewait,1.500sec,0) ino:5 sk:7f05 <--")
    assert "timer:(timewait,59sec,0)" in lines["TIME-WAIT"]
    assert "timer:(on,3sec,2)" in lines["SYN-SENT"]


def test_single_state_helper() -> None:
    assert single_state(STATE_BITS["ESTAB"])
    assert not single_state(STATE_BITS["ESTAB"] | STATE_BITS["LISTEN"])
    assert not single_state(0)


def test_terminal_layout_matches_kernel_ss() -> None:
    """On a terminal ss spreads the spare width over the columns; this is what
    ``ss -tan`` printed in an 80-column pty for these sockets."""
    records = [
        SocketRecord("LISTEN", "127.0.0.1", 8080, "0.0.0.0", 0, 1, 128),
        SocketRecord("ESTAB", "127.0.0.1", 8080, "127.0.0.1", 37996, 100, 0),
        SocketRecord("ESTAB", "127.0.0.1", 8080, "127.0.0.1", 38032, 0, 0),
        SocketRecord("ESTAB", "127.0.0.1", 37996, "127.0.0.1", 8080, 0, 0),
        SocketRecord("CLOSE-WAIT", "127.0.0.1", 38008, "127.0.0.1", 8080, 1, 0),
        SocketRecord("TIME-WAIT", "127.0.0.1", 38018, "127.0.0.1", 8080, 0, 0),
        SocketRecord("ESTAB", "127.0.0.1", 38032, "127.0.0.1", 8080, 0, 0),
        SocketRecord("FIN-WAIT-2", "127.0.0.1", 8080, "127.0.0.1", 38008, 0, 0),
    ]
    expected = (
        'State       Recv-Q  Send-Q   Local Address:Port    Peer Address:Port   Process  \n'
        'LISTEN      1       128          127.0.0.1:8080         0.0.0.0:*               \n'
        'ESTAB       100     0            127.0.0.1:8080       127.0.0.1:37996           \n'
        'ESTAB       0       0            127.0.0.1:8080       127.0.0.1:38032           \n'
        'ESTAB       0       0            127.0.0.1:37996      127.0.0.1:8080            \n'
        'CLOSE-WAIT  1       0            127.0.0.1:38008      127.0.0.1:8080            \n'
        'TIME-WAIT   0       0            127.0.0.1:38018      127.0.0.1:8080            \n'
        'ESTAB       0       0            127.0.0.1:38032      127.0.0.1:8080            \n'
        'FIN-WAIT-2  0       0            127.0.0.1:8080       127.0.0.1:38008           \n'
    )
    assert format_table(records, FormatOptions(numeric=True, screen_width=80)) == expected
