"""Per-frame cost of the IPv4 layer alone (no TCP, no device): receive with
and without software checksum verification, send and send_many, 1448-byte
TCP payloads.  ``python bench/net_path.py`` prints frames/s as JSON."""

from __future__ import annotations

import json
import time

from ustack.net.ipv4 import IpLayer
from ustack.wire import ethernet as eth
from ustack.wire import ipv4
from ustack.wire.tcp import ACK, TcpSegment

US_MAC, PEER_MAC = bytes.fromhex("020000000002"), bytes.fromhex("020000000001")
US, PEER = bytes([10, 77, 0, 2]), bytes([10, 77, 0, 1])


def main(batches: int = 2000, batch: int = 64) -> dict[str, float]:
    out: list[bytes] = []
    ip = IpLayer(address=US, prefixlen=24, mac=US_MAC, transmit=out.append,
                 transmit_many=out.extend, clock=time.monotonic)
    ip.register(6, lambda s, d, p, t: None)
    seg = TcpSegment(5555, 80, 1, 1, ACK, 500, payload=b"x" * 1448).encode(PEER, US)
    frame = eth.encode_frame(US_MAC, PEER_MAC, eth.ETHERTYPE_IPV4,
                             ipv4.Ipv4Packet(PEER, US, 6, seg).encode())
    result: dict[str, float] = {}
    for name, trusted in (("rx_verify_fps", False), ("rx_trusted_fps", True)):
        frames = [(frame, trusted)] * batch
        t = time.perf_counter()
        for _ in range(batches):
            ip.receive(frames)
        result[name] = round(batches * batch / (time.perf_counter() - t))
    ip.arp.learn(PEER, PEER_MAC, time.monotonic())
    ip.send(PEER, 6, seg)
    t = time.perf_counter()
    for _ in range(batches * batch):
        ip.send(PEER, 6, seg)
    result["tx_send_pps"] = round(batches * batch / (time.perf_counter() - t))
    out.clear()
    payloads = [seg] * batch
    t = time.perf_counter()
    for _ in range(batches):
        ip.send_many(PEER, 6, payloads)
        out.clear()
    result["tx_send_many_pps"] = round(batches * batch / (time.perf_counter() - t))
    return result


if __name__ == "__main__":
    print(json.dumps(main()))
