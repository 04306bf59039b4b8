"""ustack.heap.keep_heap_top: glibc's M_TOP_PAD set once per process, and
nothing done where it does not apply (the switch, another platform)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ustack import heap


def _run(code: str, **env: str) -> str:
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, **env}, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc")
def test_the_pad_is_set_once_and_the_switch_turns_it_off() -> None:
    code = ("from ustack import heap; a = heap.keep_heap_top(); b = heap.keep_heap_top(1);"
            " print(a, b, heap._result)")
    got = _run(code)
    import ctypes

    if hasattr(ctypes.CDLL(None), "gnu_get_libc_version"):
        assert got == "True True [True]"
    else:
        assert got == "False False [False]"
    assert _run(code, USTACK_NO_HEAP_PAD="1") == "False False [False]"


def test_not_linux_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    assert heap._set(1 << 20) is False
