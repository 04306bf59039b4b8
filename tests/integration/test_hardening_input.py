"""Input rules as Linux, on the wire (issue 13 item 5): from the kernel
peer's namespace, hand-made frames to a ustack listener; ustack must not
answer a SYN to the subnet broadcast (broadcast MAC), a SYN to its own
address in a broadcast frame, a SYN+FIN, or a SYN with a malformed IP option,
and must count each under ``drops``; a plain SYN in the same run is answered
(so the capture works)."""

from __future__ import annotations

import asyncio
import socket
import sys
import textwrap
from collections.abc import Callable

import pytest

from ustack.lab import Lab
from ustack.stack import Stack
from ustack.wire import ethernet as eth
from ustack.wire import ipv4
from ustack.wire.tcp import FIN, SYN, TcpOptions, TcpSegment

pytestmark = pytest.mark.integration

PORT = 8080

#: sends the hex frames given on stdin on IFACE and prints, for each, whether
#: a SYN-ACK to its source port came back within 0.5 s
INJECT = textwrap.dedent('''
    import socket, struct, sys, time
    iface = sys.argv[1]
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
    s.bind((iface, 0))
    s.settimeout(0.05)
    for line in sys.stdin:
        frame = bytes.fromhex(line.strip())
        sport = struct.unpack_from("!H", frame, 14 + (frame[14] & 15) * 4)[0]
        s.send(frame)
        got = False
        end = time.monotonic() + 0.5
        while time.monotonic() < end:
            try:
                data = s.recv(2048)
            except TimeoutError:
                continue
            if len(data) < 34 or data[23] != 6:
                continue
            tcp = 14 + (data[14] & 15) * 4
            dport, flags = struct.unpack_from("!H", data, tcp + 2)[0], data[tcp + 13]
            if dport == sport and flags & 0x12 == 0x12:
                got = True
        print("synack" if got else "silent", flush=True)
''')


def _frame(lab: Lab, peer_mac: bytes, stack_mac: bytes, *, dst: str, dst_mac: bytes,
           sport: int, flags: int = SYN, ip_options: bytes = b"") -> str:
    src_ip, dst_ip = socket.inet_aton(lab.peer_address), socket.inet_aton(dst)
    seg = TcpSegment(sport, PORT, 1000, 0, flags, 64240, 0, TcpOptions(mss=1460))
    packet = ipv4.Ipv4Packet(src_ip, dst_ip, 6, seg.encode(src_ip, dst_ip),
                             options=ip_options).encode()
    return eth.encode_frame(dst_mac, peer_mac, eth.ETHERTYPE_IPV4, packet).hex()


async def _main(lab: Lab) -> tuple[list[str], dict[str, int]]:
    with lab.enter_stack_ns():
        stack = await Stack.start(iface=lab.stack_if, address=lab.stack_address)
    try:
        server = await stack.start_server(lambda r, w: w.close(), port=PORT)
        # the peer's MAC (ustack learns it from the kernel's ARP reply)
        peer_mac = bytes.fromhex((await stack.resolve(lab.peer_address, timeout=5))
                                 .replace(":", ""))
        us_mac = stack.ip.mac
        net = lab.stack_address.split("/")[0].rsplit(".", 1)[0]
        bcast = f"{net}.255"
        frames = [
            _frame(lab, peer_mac, us_mac, dst=bcast, dst_mac=eth.BROADCAST, sport=41001),
            _frame(lab, peer_mac, us_mac, dst=lab.stack_ip, dst_mac=eth.BROADCAST, sport=41002),
            _frame(lab, peer_mac, us_mac, dst=lab.stack_ip, dst_mac=us_mac, sport=41003,
                   flags=SYN | FIN),
            _frame(lab, peer_mac, us_mac, dst=lab.stack_ip, dst_mac=us_mac, sport=41004,
                   ip_options=b"\x07\x02\x04\x00"),  # record route without a pointer
            _frame(lab, peer_mac, us_mac, dst=lab.stack_ip, dst_mac=us_mac, sport=41005),
        ]
        before = stack.counters()
        proc = await asyncio.create_subprocess_exec(
            "ip", "netns", "exec", lab.peer_ns, sys.executable, "-c", INJECT, lab.peer_if,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate(("\n".join(frames) + "\n").encode())
        assert proc.returncode == 0, err.decode()
        after = stack.counters()
        server.close()
        grown = {k: after[k] - before.get(k, 0) for k in after
                 if k.startswith("drop.") and after[k] != before.get(k, 0)}
        return out.decode().split(), grown
    finally:
        await stack.close()


def test_broadcast_synfin_and_bad_ip_options_get_no_synack(lab_factory: Callable[..., Lab]
                                                            ) -> None:
    lab = lab_factory()
    answers, drops = asyncio.run(asyncio.wait_for(_main(lab), 60))
    assert answers == ["silent", "silent", "silent", "silent", "synack"], (answers, drops)
    assert drops.get("drop.tcp-not-unicast") == 2, drops
    assert drops.get("drop.tcp-listen-syn-fin") == 1, drops
    assert drops.get("drop.ip-bad-options") == 1, drops
