"""Probe packet specs: option lists, packet lines, matching (pure, no I/O)."""

from __future__ import annotations

import pytest

from ustack.probe.packet import (
    Opt,
    ScriptSyntaxError,
    encode_options,
    format_spec,
    options_mismatch,
    options_of,
    parse_options,
    parse_segment,
)
from ustack.wire.tcp import decode_options


def test_options_keep_the_written_order_and_pad_with_eol() -> None:
    opts = parse_options("mss 1460,sackOK,nop,wscale 7")
    raw = encode_options(opts, sack_base=0, ts_echo=0)
    assert raw == bytes([2, 4, 0x05, 0xB4, 4, 2, 1, 3, 3, 7, 0, 0])


def test_ts_ecr_star_echoes_and_sack_blocks_are_relative() -> None:
    opts = parse_options("nop,nop,TS val 5 ecr *,nop,nop,sack 1:11")
    raw = encode_options(opts, sack_base=1000, ts_echo=77)
    decoded = decode_options(raw)
    assert decoded.timestamp == (5, 77)
    assert decoded.sack_blocks == [(1001, 1011)]
    assert options_of(decoded, sack_base=1000) == [Opt("TS", 5, 77), Opt("sack", blocks=((1, 11),))]


def test_raw_option_bytes_are_sent_verbatim() -> None:
    raw = encode_options(parse_options("raw fe0401ff"), sack_base=0, ts_echo=0)
    assert raw == bytes.fromhex("fe0401ff")


def test_too_many_options_is_an_error() -> None:
    with pytest.raises(ValueError, match="too long"):
        encode_options(parse_options(",".join(["TS val 1 ecr 2"] * 5)), sack_base=0, ts_echo=0)


@pytest.mark.parametrize("bad", ["mss", "wscale x", "TS val 1", "sack 1-2", "bogus 3", ""])
def test_bad_options_name_the_option(bad: str) -> None:
    with pytest.raises(ScriptSyntaxError):
        parse_options(bad + ",nop" if bad else ",nop")


def test_option_matching_ignores_padding_and_order_but_not_values() -> None:
    actual = [Opt("mss", 1460), Opt("sackOK"), Opt("TS", 9, 100), Opt("wscale", 10)]
    assert options_mismatch(parse_options("mss 1460,sackOK,TS val * ecr 100,nop,wscale *"),
                            actual) is None
    assert options_mismatch(parse_options("wscale *,mss *,sackOK,TS val * ecr *"), actual) is None
    assert "ecr" in (options_mismatch(parse_options("mss *,sackOK,TS val * ecr 5,wscale *"),
                                      actual) or "")
    assert "unexpected TS" in (options_mismatch(parse_options("mss *,sackOK,wscale *"),
                                                actual) or "")
    assert "missing sack" in (options_mismatch(parse_options("mss *,sackOK,TS val * ecr *,"
                                                             "wscale *,sack 1:2"), actual) or "")
    assert options_mismatch([], []) is None


def test_parse_sent_segment_with_extras() -> None:
    spec = parse_segment("P. 1:11(10) ack 5 win 512 urg 3 <nop,nop,TS val 1 ecr 0> "
                         "badsum ttl 3 nodf id 7 tos 16", expectation=False)
    assert (spec.flags, spec.seq, spec.length, spec.ack, spec.win, spec.urg) == \
        ("P.", 1, 10, 5, 512, 3)
    assert spec.bad_checksum and spec.ip.ttl == 3 and spec.ip.df is False
    assert spec.ip.ident == 7 and spec.ip.tos == 16
    assert spec.options == [Opt("nop"), Opt("nop"), Opt("TS", 1, 0)]


def test_parse_expectation_wildcards_and_absent_fields() -> None:
    spec = parse_segment("R. *:*(0) ack 6", expectation=True)
    assert spec.seq is None and spec.length == 0 and spec.ack == 6
    assert spec.win is None and spec.options is None
    none = parse_segment(". 1:1(0) ack 1 <>", expectation=True)
    assert none.options == []


@pytest.mark.parametrize("line, message", [
    ("S 0:5(3)", "END - START"),
    ("X 0:0(0)", "unknown TCP flag"),
    ("S 0-0", "sequence range"),
    (". 1:1(0)", "give 'ack N'"),
    ("S 0:0(0) win", "needs a value"),
    ("S 0:0(0) frobnicate", "unexpected word"),
    ("P. 1:3(2) ack 1 payload 00", "payload length"),
])
def test_bad_sent_segments(line: str, message: str) -> None:
    with pytest.raises(ScriptSyntaxError, match=message):
        parse_segment(line, expectation=False)


def test_badsum_is_only_for_sent_segments() -> None:
    with pytest.raises(ScriptSyntaxError):
        parse_segment(". 1:1(0) ack 1 badsum", expectation=True)


def test_format_spec_round_trips_through_the_parser() -> None:
    text = "S. 0:0(0) ack 1 win 65535 <mss 1460,sackOK,TS val * ecr 100,wscale 7>"
    spec = parse_segment(text, expectation=True)
    assert format_spec(spec) == text
    assert parse_segment(format_spec(spec), expectation=True) == spec
