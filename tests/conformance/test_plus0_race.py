"""The ``+0`` race: an application action right after a ``<`` line must see
that segment (issue 12 item 4).

ustack shares the probe's event loop, so without the settle step the action
ran before the stack's receive path had read the frame: the non-blocking
read below got EAGAIN, and ``close()`` sent a FIN although data was unread.
The kernel usually processes a frame inside the probe's ``send()``; its
settle step waits for ``Tcp InSegs`` to count the frame.
"""

from __future__ import annotations

import pytest

from ustack.lab import Lab
from ustack.probe.peers import Peer, UstackPeer
from ustack.probe.script import ScriptError, parse_script, run_script
from ustack.probe.session import probe_session

pytestmark = pytest.mark.integration

READ_AT_ONCE = """
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 fcntl(3, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 32792 <mss 1000,nop,wscale 7>
   +0 > S. 0:0(0) ack 1 <mss 1460,nop,wscale *>
   +.02 < . 1:1(0) ack 1 win 257
// the accept follows the ACK at once: the connection must be there
   +0 accept(3, ..., ...) = 4
   +0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 < P. 1:1001(1000) ack 1 win 257
// no '>' line in between: the read must see the segment just sent
   +0 read(4, ..., 1000) = 1000
"""

CLOSE_WITH_UNREAD = """
peer listen 8080
0.000 < S 0:0(0) win 65535 <mss 1460>
+0    > S. 0:0(0) ack 1 <mss 1460>
+0    < . 1:1(0) ack 1 win 65535
+0    peer expect connected
+0.05 < P. 1:101(100) ack 1 win 65535
# closing with those 100 bytes unread must reset (RFC 2525 2.17), not FIN
+0    peer close
# (the data's ACK, sent on arrival, comes first)
*     > . 1:1(0) ack 101
+0    > R. 1:1(0) ack 101
"""


async def run(lab: Lab, kind: str, text: str, name: str, *, settle: bool = True) -> None:
    script = parse_script(text, name)
    async with probe_session(lab, kind, offload=name.endswith(".pkt")) as (peer, probe):
        if not settle:
            async def no_settle(_probe: object, timeout: float = 1.0) -> None:
                del timeout

            peer.settle = no_settle  # type: ignore[method-assign,assignment]
        await run_script(script, peer, probe, tolerance_floor=0.03)


@pytest.mark.parametrize("kind", ["kernel", "ustack"])
@pytest.mark.parametrize("text, name", [(READ_AT_ONCE, "read.pkt"),
                                        (CLOSE_WITH_UNREAD, "close.txt")],
                         ids=["packetdrill-read", "probe-close"])
async def test_action_after_a_segment_sees_it(lab: Lab, kind: str, text: str,
                                              name: str) -> None:
    await run(lab, kind, text, name)


@pytest.mark.parametrize("text, name, symptom", [
    (READ_AT_ONCE, "read.pkt", "EAGAIN"),
    (CLOSE_WITH_UNREAD, "close.txt", "flags differ"),
], ids=["packetdrill-read", "probe-close"])
async def test_without_the_settle_step_ustack_loses_the_race(
        lab: Lab, text: str, name: str, symptom: str) -> None:
    with pytest.raises(ScriptError) as info:
        await run(lab, "ustack", text, name, settle=False)
    assert symptom in str(info.value)


def test_every_peer_can_settle() -> None:
    for cls in (UstackPeer, *Peer.__subclasses__()):
        assert "settle" in vars(cls) or cls is Peer, cls
