"""Parsing of tc-style quantities for ``ustack sim``: rates, times, ratios."""

from __future__ import annotations

import re

_RATE = {"": 1.0, "bit": 1.0, "kbit": 1e3, "mbit": 1e6, "gbit": 1e9, "tbit": 1e12,
         "bps": 8.0, "kbps": 8e3, "mbps": 8e6, "gbps": 8e9}
_TIME = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "msec": 1e-3, "us": 1e-6, "usec": 1e-6}
_NUM = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)\s*([a-z%]*)\s*$", re.I)


def _split(text: str, what: str) -> tuple[float, str]:
    m = _NUM.match(text)
    if not m:
        raise ValueError(f"invalid {what} {text!r}")
    return float(m.group(1)), m.group(2).lower()


def parse_rate(text: str) -> float:
    """``"100mbit"`` → 1e8 bit/s.  tc units: bit kbit mbit gbit (bits per
    second) and bps kbps mbps gbps (bytes per second, as tc reads them)."""
    value, unit = _split(text, "rate")
    if unit not in _RATE:
        raise ValueError(f"invalid rate {text!r}: units are {', '.join(k for k in _RATE if k)}")
    return value * _RATE[unit]


def parse_time(text: str) -> float:
    """``"20ms"`` → 0.02 s (s, ms, us; a bare number is seconds)."""
    value, unit = _split(text, "time")
    if unit not in _TIME:
        raise ValueError(f"invalid time {text!r}: units are s, ms, us")
    return value * _TIME[unit]


def parse_ratio(text: str) -> float:
    """``"0.5%"`` → 0.005; ``"0.005"`` → 0.005; must lie in [0, 1]."""
    value, unit = _split(text, "probability")
    if unit == "%":
        value /= 100
    elif unit:
        raise ValueError(f"invalid probability {text!r}: give 0.5% or 0.005")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"invalid probability {text!r}: must be within 0..1 (0%..100%)")
    return value


__all__ = ["parse_rate", "parse_ratio", "parse_time"]
