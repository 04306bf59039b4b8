"""Out-of-order reassembly for the receive side (RFC 9293 3.10.7.4 "seventh",
RFC 2018 SACK blocks).

Blocks are kept as *stream positions* (64-bit offsets counted from the first
data byte after the peer's SYN) so no wrap-around arithmetic is needed inside;
the connection converts sequence numbers at the boundary.  Overlapping and
adjacent blocks are merged on insert (first copy wins, as Linux keeps the
data it already has).  Memory is bounded by the caller trimming every segment
to the receive window before inserting.
"""

from __future__ import annotations

from typing import Any, Final

#: the (never written) block lists of a Reassembly holding no block
_NONE: Final[list[Any]] = []


class Reassembly:
    """Sorted, non-overlapping, non-adjacent ``[start, end)`` blocks with data."""

    __slots__ = ("_starts", "_ends", "_data", "nbytes", "fin_pos", "_recent")

    def __init__(self) -> None:
        # the shared empty list until the first block arrives (add): most
        # connections never reorder, and three empty lists are 168 bytes
        self._starts: list[int] = _NONE
        self._ends: list[int] = _NONE
        self._data: list[bytes] = _NONE
        self.nbytes = 0
        #: stream position of an out-of-order FIN, if one arrived
        self.fin_pos: int | None = None
        self._recent: int = -1  # start of the block most recently touched

    def __bool__(self) -> bool:
        return bool(self._starts) or self.fin_pos is not None

    def __len__(self) -> int:
        return len(self._starts)

    def add(self, start: int, data: bytes, max_blocks: int = 0) -> bool:
        """Insert ``data`` at stream position ``start``; True if any byte was new.

        With ``max_blocks`` set, a segment that would create a new block when
        that many exist is dropped (the sender will retransmit it): the
        per-segment cost stays bounded against a peer that sends 1-byte
        segments into every other hole (Linux prunes its out-of-order queue
        by memory for the same reason, tcp_prune_ofo_queue)."""
        end = start + len(data)
        if end <= start:
            return False
        if not self._starts:
            # fresh lists whenever there is no block (not only when shared:
            # a deep copy turns the shared empty list into one list aliased
            # by all three)
            self._starts, self._ends, self._data = [], [], []
        starts, ends, datas = self._starts, self._ends, self._data
        # first block whose end >= start (may touch or overlap)
        lo = 0
        hi = len(starts)
        while lo < hi:
            mid = (lo + hi) // 2
            if ends[mid] < start:
                lo = mid + 1
            else:
                hi = mid
        i = lo
        j = i
        new_start, new_end = start, end
        parts: list[bytes] = []
        covered = 0
        # merge every block overlapping or adjacent to [start, end)
        while j < len(starts) and starts[j] <= end:
            s, e, d = starts[j], ends[j], datas[j]
            covered += max(0, min(e, end) - max(s, start))
            if s < new_start:
                new_start = s
            if e > new_end:
                new_end = e
            j += 1
        if j == i:
            if max_blocks and len(starts) >= max_blocks:
                return False
            starts.insert(i, start)
            ends.insert(i, end)
            datas.insert(i, data)
            self.nbytes += len(data)
            self._recent = start
            return True
        if covered >= end - start:
            self._recent = starts[i]
            return False
        # rebuild the merged block: existing blocks win where they overlap
        pos = new_start
        for k in range(i, j):
            s, e, d = starts[k], ends[k], datas[k]
            if pos < s:  # gap before this block, filled from the new data
                parts.append(data[pos - start:s - start])
            parts.append(d)
            pos = e
        if pos < new_end:
            parts.append(data[pos - start:new_end - start])
        merged = b"".join(parts)
        removed = sum(ends[k] - starts[k] for k in range(i, j))
        del starts[i:j], ends[i:j], datas[i:j]
        starts.insert(i, new_start)
        ends.insert(i, new_start + len(merged))
        datas.insert(i, merged)
        self.nbytes += len(merged) - removed
        self._recent = new_start
        return True

    def pop_ready(self, pos: int) -> bytes | None:
        """If the first block reaches ``pos`` (the in-order edge), remove and
        return its bytes from ``pos`` on; blocks wholly below ``pos`` are dropped."""
        starts = self._starts
        while starts and self._ends[0] <= pos:
            self.nbytes -= self._ends[0] - starts[0]
            del starts[0], self._ends[0], self._data[0]
        if not starts or starts[0] > pos:
            return None
        s, e, d = starts[0], self._ends[0], self._data[0]
        del starts[0], self._ends[0], self._data[0]
        self.nbytes -= e - s
        return d[pos - s:] if pos > s else d

    def blocks(self) -> list[tuple[int, int]]:
        """SACK blocks as stream positions, the most recently changed first
        (RFC 2018 section 4), then the rest in ascending order."""
        out = list(zip(self._starts, self._ends, strict=True))
        for k, (s, _e) in enumerate(out):
            if s == self._recent:
                if k:
                    out.insert(0, out.pop(k))
                break
        return out

    def highest(self) -> int | None:
        """End position of the highest block."""
        return self._ends[-1] if self._ends else None

    def clear(self) -> None:
        self._starts = self._ends = _NONE
        self._data = _NONE
        self.nbytes = 0
        self.fin_pos = None
