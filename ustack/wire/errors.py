"""The one exception type every decoder in :mod:`ustack.wire` raises."""


class ParseError(ValueError):
    """Malformed input: a frame, packet or segment that cannot be decoded.

    ``reason`` is a short, stable slug (``"truncated"``, ``"bad-checksum"``, ...)
    that the receive path uses as its drop-counter key.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
