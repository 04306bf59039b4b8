"""Fakes of what the TCP connection table is given (the IP layer and the
stack's address), shared by the tests that build a real ``TcpTable``."""

from __future__ import annotations

from ustack.wire.tcp import TcpSegment


class FakeIp:
    def __init__(self) -> None:
        self.sent: list[tuple[bytes, int, bytes]] = []
        #: destinations :meth:`reachable` says have no route
        self.unreachable: set[bytes] = set()

    def send(self, dst: bytes, protocol: int, payload: bytes) -> None:
        self.sent.append((dst, protocol, payload))

    def reachable(self, dst: bytes, now: float) -> bool:
        return dst not in self.unreachable

    def segments(self) -> list[TcpSegment]:
        return [TcpSegment.decode(p) for _, _, p in self.sent]

    def take(self) -> list[TcpSegment]:
        """The segments sent since the last call."""
        out = self.segments()
        self.sent = []
        return out


class FakeStack:
    def __init__(self) -> None:
        self.ip = FakeIp()
        self.address = "10.77.0.2"  # as Stack.address: no prefix
