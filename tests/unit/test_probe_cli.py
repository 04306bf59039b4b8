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
    assert "| # | scenario | RFC | Linux (expected) | kernel (" in out
    assert ") | ustack | notes |" in out
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


# ---- issue 13: bad input is one line and a non-zero status, never a traceback
def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return err


def test_run_binary_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blob = tmp_path / "blob.pkt"
    blob.write_bytes(bytes(range(256)) * 4)
    assert main(["probe", "run", str(blob)]) == 2
    assert "binary" in _one_line_error(capsys)


def test_run_non_utf8_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    blob = tmp_path / "latin.pkt"
    blob.write_bytes(b"0 < S 0:0(0) win 1000 \xe9\xff\n")
    assert main(["probe", "run", str(blob)]) == 2
    assert "UTF-8" in _one_line_error(capsys)


@pytest.mark.parametrize("line", ["peer listen 99999", "probe to 99999", "peer listen 0",
                                  "probe to -1"])
def test_run_port_out_of_range(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                               line: str) -> None:
    script = tmp_path / "port.pkt"
    script.write_text(line + "\n0 < S 0:0(0) win 1000\n")
    assert main(["probe", "run", str(script)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "port.pkt:1" in err


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "// packetdrill comment\n"])
def test_run_empty_script_does_not_pass(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                        text: str) -> None:
    script = tmp_path / "empty.pkt"
    script.write_text(text)
    assert main(["probe", "run", str(script)]) == 2
    assert "no events" in _one_line_error(capsys)
    assert "PASS" not in capsys.readouterr().out


def test_run_pcap_into_missing_directory(capsys: pytest.CaptureFixture[str],
                                         tmp_path: Path) -> None:
    script = tmp_path / "ok.pkt"
    script.write_text("probe to 8081\n0 < S 0:0(0) win 1000\n+0 > R. 0:0(0) ack 1\n")
    assert main(["probe", "run", str(script), "--pcap", str(tmp_path / "no" / "x.pcap")]) == 2
    assert "does not exist" in _one_line_error(capsys)


def test_table_write_into_missing_directory(capsys: pytest.CaptureFixture[str],
                                            tmp_path: Path) -> None:
    assert main(["probe", "table", "--write", str(tmp_path / "no" / "c.md")]) == 2
    assert "does not exist" in _one_line_error(capsys)


def test_table_only_unknown_scenario_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "table", "--only", "nosuch"]) == 2
    assert "nosuch" in _one_line_error(capsys)


def test_table_only_filters_the_printed_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "table", "--only", "25"]) == 0
    rows = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| 25")]
    assert len(rows) == 1


def test_list_into_a_closed_pipe_is_quiet(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.run(f"'{sys.executable}' -m ustack probe list | head -1", shell=True,
                          capture_output=True, text=True, env=env, timeout=60)
    assert len(proc.stdout.splitlines()) == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


def test_suite_needs_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["probe", "suite", str(tmp_path / "nope")]) == 2
    assert "not a directory" in _one_line_error(capsys)
    assert main(["probe", "suite", str(tmp_path), "--peer", "bsd"]) == 2
    assert "unknown peer" in _one_line_error(capsys)


def test_run_deeply_nested_brackets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    script = tmp_path / "deep.pkt"
    script.write_text("0 write(3, " + "[" * 5000 + "]" * 5000 + ", 1) = 1\n")
    assert main(["probe", "run", str(script)]) == 2
    err = capsys.readouterr().err
    assert "nested too deeply" in err and "Traceback" not in err
