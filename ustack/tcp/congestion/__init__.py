"""Congestion control algorithms, selected by name (``TcpConfig.congestion``).

``register(cls)`` adds an algorithm; ``create(name, mss, initial_cwnd)``
instantiates one; ``available()`` lists names (Linux's
``tcp_available_congestion_control``).  The registry itself lives in
:mod:`ustack.tcp.congestion.registry` (a compiled module; this ``__init__``
is not compiled).
"""

from __future__ import annotations

from ustack.tcp.congestion.base import CaState, CongestionController, RateSample
from ustack.tcp.congestion.bbr import Bbr
from ustack.tcp.congestion.cubic import Cubic
from ustack.tcp.congestion.registry import _REGISTRY, available, create, register
from ustack.tcp.congestion.reno import Reno

__all__ = ["Bbr", "CaState", "CongestionController", "Cubic", "RateSample", "Reno", "_REGISTRY",
           "available", "create", "register"]
