# frames: a list of bytes; any other item raises TypeError (the caller then
# sends the rest one by one)
def sendmany(fd: int, frames: list[bytes | bytearray | memoryview], start: int, /
             ) -> tuple[int, int, int]: ...
def sendgather(fd: int, items: list[tuple[bytes | bytearray | memoryview, ...]], start: int,
               /) -> tuple[int, int, int, list[float]]: ...
# the receive ring's ready slots into frames/times (AfPacketDevice._on_readable_ring)
def ring_read(ring: object, slot_size: int, nslots: int, head: int, budget: int,
              pkttype_off: int, trusted_bits: int, frames: list[tuple[bytes, bool]],
              times: list[float], offset: float, now: float, /
              ) -> tuple[int, int, int, int, int]: ...
