"""A maximum over the last N rounds (BBR's bandwidth filter, Linux
``minmax_running_max`` with a window counted in packet-timed rounds)."""

from __future__ import annotations


class WindowedMax:
    """Keeps the largest value seen per round for the last ``window`` rounds.

    ``update(round, value)`` is O(1) except when a new round begins (then
    O(window) to drop the round that fell out of the window).
    """

    __slots__ = ("window", "best", "_rounds", "_values")

    def __init__(self, window: int) -> None:
        self.window = window
        self.best = 0.0
        self._rounds = [-window - 1] * window
        self._values = [0.0] * window

    def update(self, rnd: int, value: float) -> float:
        i = rnd % self.window
        if self._rounds[i] != rnd:
            self._rounds[i] = rnd
            self._values[i] = value
            oldest = rnd - self.window
            self.best = max((v for r, v in zip(self._rounds, self._values, strict=True)
                             if r > oldest),
                            default=0.0)
        elif value > self._values[i]:
            self._values[i] = value
            if value > self.best:
                self.best = value
        return self.best

    def reset(self) -> None:
        self.best = 0.0
        self._rounds = [-self.window - 1] * self.window
        self._values = [0.0] * self.window
