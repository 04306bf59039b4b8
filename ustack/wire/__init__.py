"""Wire formats: pure encode/decode functions, bytes in and bytes out.

Every decoder raises :class:`ParseError` (and only that) on malformed input.
"""

from ustack.wire.errors import ParseError

__all__ = ["ParseError"]
