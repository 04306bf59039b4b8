"""The compiled connection object stays a pymalloc small object (issue 14).

mypyc lays a native class's fields out in the order ``__init__`` first
assigns them, a flag taking one byte: the flags of TcpConnection, Receiver,
Sender and CongestionController are assigned first and together, so they
share words instead of taking one word each.  A compiled TcpConnection of
more than 512 bytes (with the GC header) would be a malloc block instead of
a pymalloc one: this test says so when a new field crosses the line (and
where the bytes went), in a subprocess on the compiled build; it skips
without one (CI builds it and fails if it is missing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PROBE = """
import json, sys
import ustack
from ustack.tcp.testing import MemoryPair
pair = MemoryPair()
pair.handshake()
while pair.now < 1.0 and pair.step():
    pass
c = pair.a
while c.next_event() is not None:
    pass
objs = {"connection": c, "receiver": c.rcv, "sender": c.snd, "cc": c.cc,
        "rtt": c.rtt, "timers": c.timers}
print(json.dumps({"mode": ustack.accel_status()["mode"],
                  "cc": c.cc.name,
                  "sizes": {k: sys.getsizeof(v) for k, v in objs.items()},
                  "hs": type(getattr(c.cc, "_hs", 0)).__name__}))
"""


def _probe(pure: bool) -> dict[str, object]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("USTACK_NO_ACCEL", None)
    if pure:
        env["USTACK_NO_ACCEL"] = "1"
    proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out: dict[str, object] = json.loads(proc.stdout)
    return out


def test_compiled_connection_is_a_pymalloc_small_object() -> None:
    got = _probe(pure=False)
    if got["mode"] != "compiled":
        pytest.skip("no compiled build (CI builds it and fails if it is missing)")
    sizes = got["sizes"]
    assert isinstance(sizes, dict)
    # pymalloc serves requests up to 512 bytes (SMALL_REQUEST_THRESHOLD);
    # sys.getsizeof includes the GC header that is part of the request
    assert sizes["connection"] <= 512, sizes
    # the flags of the rooms are packed too (one word each would be more);
    # the sender's 160 includes the urgent pointer (SND.UP), in the 160-byte
    # pymalloc class its 152 bytes took before it
    assert sizes["receiver"] <= 192 and sizes["sender"] <= 160, sizes
    # cubic's 208 includes Linux's ca->cnt and last_time (the jiffy
    # arithmetic of bictcp_update, issue 9), one class above its 192 before
    assert got["cc"] == "cubic" and sizes["cc"] <= 208, sizes


@pytest.mark.parametrize("pure", [True, False], ids=["pure", "default"])
def test_idle_connection_has_no_hystart_state(pure: bool) -> None:
    got = _probe(pure=pure)
    assert got["cc"] == "cubic"
    assert got["hs"] == "NoneType"  # no ACK of data yet: no HyStart++ round state


def test_transport_flags_are_packed() -> None:
    """The streams transport (interpreted, slotted) keeps its rarely changed
    flags as bits of one int: 176 bytes with the GC header, a pymalloc
    class of its own where thirteen bool slots made 232 (a 240-byte block)."""
    from ustack.streams import TcpTransport

    gc_header = sys.getsizeof([]) - [].__sizeof__()
    assert TcpTransport.__basicsize__ + gc_header <= 176, TcpTransport.__slots__
    t = TcpTransport.__new__(TcpTransport)
    t._flags = 0
    for name in ("_resume_scheduled", "_peer_eof", "_eof_delivered", "_eof_wanted",
                 "_eof_sent", "_lost_when_drained", "_writing_paused", "_buffered"):
        assert getattr(t, name) is False
        setattr(t, name, True)
        assert getattr(t, name) is True
    assert t._flags == 255
    t._eof_wanted = False
    assert t._flags == 255 & ~8 and t._eof_wanted is False
