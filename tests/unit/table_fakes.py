"""Fakes of what the TCP connection table is given (the IP layer and the
stack's address), shared by the tests that build a real ``TcpTable``."""

from __future__ import annotations

from ustack.wire.tcp import TcpSegment


class FakeIp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, int, bytes]] = []

    def send(self, dst: bytes, protocol: int, payload: bytes) -> None:
        self.sent.append((dst, protocol, payload))

    def segments(self) -> list[TcpSegment]:
        return [TcpSegment.decode(p) for _, _, p in self.sent]


class FakeStack:
    def __init__(self) -> None:
        self.ip = FakeIp()
        self.address = "10.77.0.2"  # as Stack.address: no prefix
