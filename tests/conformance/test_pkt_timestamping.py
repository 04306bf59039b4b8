"""SO_TIMESTAMPING with recvmsg(MSG_ERRQUEUE), NULL buffers and host-global
module parameters, against both peers (real lab).

Each script asserts what the call must report (the stamp kind, its key, its
time); a wrong expectation must fail, so a peer that reports nothing or
the wrong thing cannot pass.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conformance.pkt_run import run_pkt
from ustack.lab import Lab
from ustack.probe.script import ScriptError, ScriptUnsupported
from ustack.probe.session import probe_session
from ustack.probe.syscalls import Unsupported

pytestmark = pytest.mark.integration
both = pytest.mark.parametrize("kind", ["kernel", "ustack"])

TSFLAGS = ("[SOF_TIMESTAMPING_TX_SCHED | SOF_TIMESTAMPING_TX_SOFTWARE | "
           "SOF_TIMESTAMPING_TX_ACK | SOF_TIMESTAMPING_SOFTWARE | SOF_TIMESTAMPING_OPT_ID]")


def errqueue(when: str, kind: str, key: int, fd: int = 4) -> str:
    """A recvmsg(MSG_ERRQUEUE) line expecting one stamp of ``kind`` at ``when`` s."""
    nsec = round(float(when) * 1e9)
    return f"""
   +0 recvmsg({fd}, {{msg_name(...)=..., msg_iov(1)=[{{...,0}}],
                 msg_flags=MSG_ERRQUEUE|MSG_TRUNC,
                 msg_control=[
                   {{cmsg_level=SOL_SOCKET, cmsg_type=SCM_TIMESTAMPING,
                    cmsg_data={{scm_sec=0,scm_nsec={nsec}}}}},
                   {{cmsg_level=CMSG_LEVEL_IP, cmsg_type=CMSG_TYPE_RECVERR,
                    cmsg_data={{ee_errno=ENOMSG, ee_origin=SO_EE_ORIGIN_TIMESTAMPING,
                               ee_type=0, ee_code=0, ee_info={kind}, ee_data={key}}}}}
                 ]}}, MSG_ERRQUEUE) = 0
"""


#: a passive open with a 200 ms RTT (no loss probe before the ACK at 0.4 s)
SERVER = """
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
   +0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale *>
  +.2 < . 1:1(0) ack 1 win 257
   +0 accept(3, ..., ...) = 4
"""

async def run(lab: Lab, kind: str, body: str, *, prefix: str = SERVER) -> None:
    await run_pkt(lab, kind, prefix + body)


# accepted at 0.2 s; stamps at 0.2 (sent) and 0.4 (ACKed)
STAMPED = f"""
   +0 setsockopt(4, SOL_SOCKET, SO_TIMESTAMPING, {TSFLAGS}, 4) = 0
   +0 write(4, ..., 1000) = 1000
   +0 > P. 1:1001(1000) ack 1
   +0 write(4, ..., 1000) = 1000
   +0 > P. 1001:2001(1000) ack 1
  +.2 < . 1:1(0) ack 2001 win 257
"""


@both
async def test_so_timestamping_reports_sched_snd_and_ack_per_write(lab: Lab, kind: str
                                                                   ) -> None:
    """Each write's last byte is stamped (keys 999 and 1999 from SND.UNA):
    SCHED and SND when it leaves, ACK when it is acknowledged, in order."""
    await run(lab, kind, STAMPED
              + errqueue("0.2", "SCM_TSTAMP_SCHED", 999)
              + errqueue("0.2", "SCM_TSTAMP_SND", 999)
              + errqueue("0.2", "SCM_TSTAMP_SCHED", 1999)
              + errqueue("0.2", "SCM_TSTAMP_SND", 1999)
              + errqueue("0.4", "SCM_TSTAMP_ACK", 999)
              + errqueue("0.4", "SCM_TSTAMP_ACK", 1999) + """
   +0 recvmsg(4, {msg_name(...)=..., msg_iov(1)=[{...,0}], msg_flags=0,
                  msg_control=[]}, MSG_ERRQUEUE) = -1 EAGAIN
""")


@both
@pytest.mark.parametrize("wrong", ["time", "key", "kind"])
async def test_so_timestamping_wrong_expectation_fails(lab: Lab, kind: str, wrong: str
                                                       ) -> None:
    body = STAMPED + {
        "time": errqueue("0.4", "SCM_TSTAMP_SCHED", 999),  # sent at 0.2, not 0.4
        "key": errqueue("0.2", "SCM_TSTAMP_SCHED", 1000),
        "kind": errqueue("0.2", "SCM_TSTAMP_SND", 999),  # SCHED comes first
    }[wrong]
    with pytest.raises(ScriptError, match="recvmsg"):
        await run(lab, kind, body)


@both
async def test_so_timestamping_opt_id_needs_a_connection(lab: Lab, kind: str) -> None:
    """OPT_ID on a listening TCP socket: EINVAL (sock_set_timestamping)."""
    await run(lab, kind, f"""
   +0 setsockopt(3, SOL_SOCKET, SO_TIMESTAMPING, {TSFLAGS}, 4) = -1 EINVAL
   +0 setsockopt(4, SOL_SOCKET, SO_TIMESTAMPING, [SOF_TIMESTAMPING_SOFTWARE], 4) = 0
""")


@both
async def test_null_buffer_gives_efault_and_leaves_the_data(lab: Lab, kind: str) -> None:
    """write/send/sendto/read/recv/recvfrom with NULL: -1 EFAULT; nothing is
    sent, and the received data is still there for a real read."""
    await run(lab, kind, """
   +0 write(4, NULL, 1000) = -1 EFAULT (Bad address)
   +0 send(4, NULL, 1000, 0) = -1 EFAULT (Bad address)
   +0 sendto(4, NULL, 1000, 0, ..., ...) = -1 EFAULT (Bad address)
   +0 < P. 1:1001(1000) ack 1 win 257
   +0 > . 1:1(0) ack 1001
   +0 read(4, NULL, 1000) = -1 EFAULT (Bad address)
   +0 recv(4, NULL, 1000, 0) = -1 EFAULT (Bad address)
   +0 recvfrom(4, NULL, 1000, 0, ..., ...) = -1 EFAULT (Bad address)
   +0 read(4, ..., 2000) = 1000
   +0 write(4, ..., 100) = 100
   +0 > P. 1:101(100) ack 1001
""")


@both
async def test_null_buffer_read_waits_for_data_like_a_real_read(lab: Lab, kind: str) -> None:
    await run(lab, kind, """
   +0 fcntl(4, F_SETFL, O_RDWR|O_NONBLOCK) = 0
   +0 read(4, NULL, 1000) = -1 EAGAIN (Resource temporarily unavailable)
   +0 fcntl(4, F_SETFL, O_RDWR) = 0
   +0...0.1 read(4, NULL, 1000) = -1 EFAULT (Bad address)
  +.1 < P. 1:1001(1000) ack 1 win 257
""")


PARAM = Path("/sys/module/tcp_cubic/parameters/hystart_ack_delta_us")


async def test_kernel_module_parameter_is_restored_when_the_peer_closes(lab: Lab) -> None:
    """The kernel peer writes a module parameter only while holding the
    lock, journals the original, and puts it back at close."""
    from ustack.probe import modparams

    if not PARAM.exists():
        pytest.skip("tcp_cubic has no hystart_ack_delta_us parameter here")
    before = PARAM.read_text().strip()
    changed = str(int(before) + 1)  # harmless for anyone else's CUBIC meanwhile
    async with probe_session(lab, "kernel", offload=True) as (peer, _probe):
        await peer.set_module_param("tcp_cubic", "hystart_ack_delta_us", changed)
        assert PARAM.read_text().strip() == changed
        assert modparams.JOURNAL_PATH.exists()
        assert not modparams.recover()  # the lock is held: nothing to recover
        assert PARAM.read_text().strip() == changed
    assert PARAM.read_text().strip() == before
    assert not modparams.JOURNAL_PATH.exists()


@both
async def test_hystart_detect_script_line(lab: Lab, kind: str) -> None:
    """``echo 3 > .../hystart_detect`` (Linux's default, what the packetdrill
    scripts write) runs on both; the value is the same after the run."""
    path = Path("/sys/module/tcp_cubic/parameters/hystart_detect")
    before = path.read_text().strip() if path.exists() else None
    await run(lab, kind, """
`echo 3 > /sys/module/tcp_cubic/parameters/hystart_detect`
   +0 write(4, ..., 1000) = 1000
   +0 > P. 1:1001(1000) ack 1
""")
    if before is not None:
        assert path.read_text().strip() == before


async def test_ustack_hystart_off_is_unsupported(lab: Lab) -> None:
    async with probe_session(lab, "ustack") as (peer, _probe):
        await peer.set_module_param("tcp_cubic", "hystart_detect", "2")
        with pytest.raises(Unsupported, match="hystart_detect=0"):
            await peer.set_module_param("tcp_cubic", "hystart_detect", "0")
    with pytest.raises(ScriptUnsupported, match="hystart=0"):
        await run(lab, "ustack", """
`echo 0 > /sys/module/tcp_cubic/parameters/hystart`
""")


@both
async def test_msg_eor_ends_a_segment_at_the_record(lab: Lab, kind: str) -> None:
    """The 400 bytes queued behind the initial window plus a MSG_EOR record
    leave as one 800-byte segment; the write after the record is not merged
    into it (without the record end: 10001:20001 then 20001:20801)."""
    await run(lab, kind, """
   +0 write(4, ..., 10400) = 10400
   +0 send(4, ..., 400, MSG_EOR) = 400
   +0 write(4, ..., 10000) = 10000
   +0 > P. 1:10001(10000) ack 1
 +.01 < . 1:1(0) ack 10001 win 257
   +0 > P. 10001:10801(800) ack 1
   +0 > P. 10801:20801(10000) ack 1
 +.01 < . 1:1(0) ack 20801 win 257
""")


@both
async def test_msg_more_holds_the_bytes_until_a_plain_write(lab: Lab, kind: str) -> None:
    """MSG_MORE corks that send even with TCP_NODELAY: nothing leaves until
    the next write without it, then both as one PSH segment (without
    MSG_MORE the first 40 bytes would leave at once)."""
    await run(lab, kind, """
   +0 setsockopt(4, SOL_TCP, TCP_NODELAY, [1], 4) = 0
   +0 send(4, ..., 40, MSG_MORE) = 40
 +.05 write(4, ..., 20) = 20
   +0 > P. 1:61(60) ack 1
 +.01 < . 1:1(0) ack 61 win 257
""")



@both
async def test_so_timestamping_is_inherited_by_accepted_sockets(lab: Lab, kind: str) -> None:
    """Flags set on the listener (no OPT_ID: keys are 0) stamp the accepted
    connection's writes."""
    await run(lab, kind, """
   +0 write(4, ..., 1000) = 1000
   +0 > P. 1:1001(1000) ack 1
""" + errqueue("0.2", "SCM_TSTAMP_SCHED", 0), prefix="""
    0 socket(..., SOCK_STREAM, IPPROTO_TCP) = 3
   +0 setsockopt(3, SOL_SOCKET, SO_REUSEADDR, [1], 4) = 0
   +0 setsockopt(3, SOL_SOCKET, SO_TIMESTAMPING,
                 [SOF_TIMESTAMPING_TX_SCHED | SOF_TIMESTAMPING_SOFTWARE], 4) = 0
   +0 bind(3, ..., ...) = 0
   +0 listen(3, 1) = 0
   +0 < S 0:0(0) win 32792 <mss 1000,sackOK,nop,nop,nop,wscale 7>
   +0 > S. 0:0(0) ack 1 <mss 1460,nop,nop,sackOK,nop,wscale *>
  +.2 < . 1:1(0) ack 1 win 257
   +0 accept(3, ..., ...) = 4
""")
