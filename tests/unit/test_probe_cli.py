"""``ustack probe`` without root: listing, the recorded table, bad scripts."""

from __future__ import annotations

from pathlib import Path

import pytest

from ustack.cli import main


def test_list_and_script(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "list"]) == 0
    out = capsys.readouterr().out
    assert "RST in window, not exact" in out
    assert main(["probe", "list", "--script", "25"]) == 0
    assert "< R 1000:1000(0)" in capsys.readouterr().out
    assert main(["probe", "list", "--script", "nope"]) == 2


def test_table_prints_recorded_results(capsys: pytest.CaptureFixture[str],
                                       tmp_path: Path) -> None:
    doc = tmp_path / "c.md"
    doc.write_text("intro\n<!-- conformance-table:begin -->\nOLDTABLE\n"
                   "<!-- conformance-table:end -->\noutro\n")
    assert main(["probe", "table", "--write", str(doc)]) == 0
    out = capsys.readouterr().out
    assert "| # | scenario | RFC | Linux (expected) | kernel | ustack | notes |" in out
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "OLDTABLE" not in text


def test_run_reports_a_syntax_error_without_traceback(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.pkt"
    bad.write_text("0 < S 0:0(0) win 1000\n+0 > Q 0:0(0)\n")
    assert main(["probe", "run", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "bad.pkt:2" in err and "unknown TCP flag" in err and "Traceback" not in err


def test_run_missing_file() -> None:
    with pytest.raises(SystemExit, match="cannot read"):
        main(["probe", "run", "/nonexistent/x.pkt"])


def test_run_without_root_says_why(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import ustack.lab

    monkeypatch.setattr(ustack.lab, "have_netns_support",
                        lambda: (False, "network namespace labs need root"))
    script = tmp_path / "ok.pkt"
    script.write_text("probe to 8081\n0 < S 0:0(0) win 1000\n+0 > R. 0:0(0) ack 1\n")
    assert main(["probe", "run", str(script)]) == 1
    err = capsys.readouterr().err
    assert "need root" in err and "Traceback" not in err
