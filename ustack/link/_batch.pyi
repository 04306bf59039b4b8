# frames: a list of bytes; any other item raises TypeError (the caller then
# sends the rest one by one)
def sendmany(fd: int, frames: list[bytes | bytearray | memoryview], start: int, /
             ) -> tuple[int, int, int]: ...
def sendgather(fd: int, items: list[tuple[bytes | bytearray | memoryview, ...]], start: int,
               /) -> tuple[int, int, int, list[float]]: ...
# frames: whole frames (bytes) and super-segments (head, tcp_header, payload,
# gso_size); None (nothing sent) when an item is anything else
def sendround(fd: int, frames: list[bytes | tuple[bytes, bytes, bytes | bytearray | memoryview,
                                                  int]], start: int, /
              ) -> tuple[int, int, int, list[float], int] | None: ...
