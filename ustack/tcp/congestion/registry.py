"""The congestion control registry: algorithms by name (``TcpConfig.congestion``).

Linux keeps its algorithms in ``tcp_cong_list`` (``tcp_register_congestion_control``,
``tcp_ca_find``); ``register`` is that list's insert, ``create`` the lookup a
connection makes when it is built, ``available`` is
``tcp_available_congestion_control``.  ``ustack.tcp.congestion`` re-exports all
three (docs/congestion.md).

This is a module of its own so that the compiled build compiles it (a
package's ``__init__`` stays interpreted): every connection calls
:func:`create`, and the built-in algorithms are then built by a direct call
of their compiled constructors instead of a generic call of a class object
(issue 14, connection setup).
"""

from __future__ import annotations

from ustack.tcp.congestion.base import CongestionController
from ustack.tcp.congestion.bbr import Bbr
from ustack.tcp.congestion.cubic import Cubic
from ustack.tcp.congestion.reno import Reno

#: name -> class; the same dict ``ustack.tcp.congestion._REGISTRY`` names
#: (not Final: compiled code would inline a Final object per use)
_REGISTRY: dict[str, type[CongestionController]] = {}


def register(cls: type[CongestionController]) -> type[CongestionController]:
    """Register a controller class under ``cls.name`` (usable as a decorator);
    a name registered again is replaced, built-in names included."""
    _REGISTRY[cls.name] = cls
    return cls


def create(name: str, mss: int, initial_cwnd: int) -> CongestionController:
    """A new controller of the algorithm registered as ``name`` (built in or
    registered by the user)."""
    cls = _REGISTRY.get(name)
    if cls is None:
        raise ValueError(
            f"unknown congestion control {name!r}; available: {', '.join(available())}")
    # the built-in classes by identity: their constructors called directly
    # (a user class registered under a built-in name is not one of them)
    if cls is Cubic:
        return Cubic(mss, initial_cwnd)
    if cls is Reno:
        return Reno(mss, initial_cwnd)
    if cls is Bbr:
        return Bbr(mss, initial_cwnd)
    return cls(mss, initial_cwnd)


def available() -> list[str]:
    """The registered names, sorted."""
    return sorted(_REGISTRY)


register(Reno)
register(Cubic)
register(Bbr)

__all__ = ["available", "create", "register"]
