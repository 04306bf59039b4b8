"""Congestion control algorithms, selected by name (``TcpConfig.congestion``).

``register(cls)`` adds an algorithm; ``create(name, mss, initial_cwnd)``
instantiates one; ``available()`` lists names (Linux's
``tcp_available_congestion_control``).
"""

from __future__ import annotations

from ustack.tcp.congestion.base import CaState, CongestionController, RateSample
from ustack.tcp.congestion.bbr import Bbr
from ustack.tcp.congestion.cubic import Cubic
from ustack.tcp.congestion.reno import Reno

_REGISTRY: dict[str, type[CongestionController]] = {}


def register(cls: type[CongestionController]) -> type[CongestionController]:
    """Register a controller class under ``cls.name`` (usable as a decorator)."""
    _REGISTRY[cls.name] = cls
    return cls


def create(name: str, mss: int, initial_cwnd: int) -> CongestionController:
    """A new controller of the algorithm registered as ``name`` (built in or
    registered by the user)."""
    try:
        cls = _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown congestion control {name!r}; available: {', '.join(available())}"
        ) from None
    return cls(mss, initial_cwnd)


def available() -> list[str]:
    return sorted(_REGISTRY)


register(Reno)
register(Cubic)
register(Bbr)

__all__ = ["Bbr", "CaState", "CongestionController", "Cubic", "RateSample", "Reno", "available",
           "create", "register"]
