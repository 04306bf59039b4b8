# frames: a list of bytes; any other item raises TypeError (the caller then
# sends the rest one by one)
# sendmany(..., lead): each message lead + frame (lead its own iovec)
def sendmany(fd: int, frames: list[bytes | bytearray | memoryview], start: int,
             lead: bytes = ..., /) -> tuple[int, int, int]: ...
def sendgather(fd: int, items: list[tuple[bytes | bytearray | memoryview, ...]], start: int,
               /) -> tuple[int, int, int, list[float]]: ...
# frames: whole frames (bytes) and super-segments (head, tcp_header, payload,
# gso_size); None (nothing sent) when an item is anything else
def sendround(fd: int, frames: list[bytes | tuple[bytes, bytes, bytes | bytearray | memoryview,
                                                  int]], start: int, /
              ) -> tuple[int, int, int, list[float], int] | None: ...
# the receive ring's ready slots into frames/times (AfPacketDevice._on_readable_ring)
def ring_read(ring: object, slot_size: int, nslots: int, head: int, budget: int,
              pkttype_off: int, trusted_bits: int, frames: list[tuple[bytes, bool]],
              times: list[float], offset: float, now: float, /
              ) -> tuple[int, int, int, int, int]: ...
