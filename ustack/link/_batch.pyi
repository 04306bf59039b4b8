# frames: a list of bytes; any other item raises TypeError (the caller then
# sends the rest one by one)
def sendmany(fd: int, frames: list[bytes | bytearray | memoryview], start: int, /
             ) -> tuple[int, int, int]: ...
