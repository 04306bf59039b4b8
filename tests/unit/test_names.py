"""Names without a network: DNS messages (RFC 1035 s.4), the hosts file,
resolv.conf and the order of the names a lookup tries."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from ustack import names
from ustack.wire import dns
from ustack.wire.errors import ParseError


def _header(ident: int, flags: int, qd: int, an: int) -> bytes:
    return struct.pack("!HHHHHH", ident, flags, qd, an, 0, 0)


def test_query_layout() -> None:
    q = dns.build_query(0x1234, "www.Example.test")
    assert q[:12] == _header(0x1234, 0x0100, 1, 0)
    assert q[12:] == b"\x03www\x07Example\x04test\x00" + b"\x00\x01\x00\x01"
    with pytest.raises(ValueError):
        dns.encode_name("a" * 64 + ".test")


def test_response_with_compression_and_cname_chain() -> None:
    question = b"\x03www\x04test\x00\x00\x01\x00\x01"
    # www.test CNAME web.test (pointer into the question), web.test A 10.0.0.7
    cname = b"\xc0\x0c" + struct.pack("!HHIH", 5, 1, 300, 6) + b"\x03web\xc0\x10"
    a = b"\xc0\x26" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([10, 0, 0, 7])
    msg = _header(7, 0x8180, 1, 2) + question + cname + a
    assert msg[0x26:0x26 + 4] == b"\x03web"  # the CNAME's target, pointed to by the A
    answer = dns.parse_response(msg)
    assert answer.ident == 7 and answer.rcode == 0 and answer.question == "www.test"
    assert answer.addresses == [bytes([10, 0, 0, 7])] and answer.ttl == 60


def test_nxdomain_truncation_and_garbage() -> None:
    question = b"\x04nope\x04test\x00\x00\x01\x00\x01"
    answer = dns.parse_response(_header(9, 0x8383, 1, 0) + question)
    assert (answer.rcode, answer.truncated, answer.addresses) == (3, True, [])
    loop = _header(1, 0x8180, 1, 0) + b"\xc0\x0c"  # a name pointing at itself
    with pytest.raises(ParseError):
        dns.parse_response(loop)
    with pytest.raises(ParseError):
        dns.parse_response(b"\x00" * 5)
    with pytest.raises(ParseError):
        dns.parse_response(_header(1, 0x0100, 1, 0) + question)  # a query, not a response


def test_build_response_round_trip() -> None:
    query = dns.build_query(42, "name.test")
    reply = dns.build_response(query, [bytes([10, 77, 0, 1]), bytes([10, 77, 0, 9])])
    answer = dns.parse_response(reply)
    assert answer.addresses == [bytes([10, 77, 0, 1]), bytes([10, 77, 0, 9])]
    assert dns.parse_response(dns.build_response(query, [], rcode=3)).rcode == 3


def test_hosts_file(tmp_path: Path) -> None:
    hosts = tmp_path / "hosts"
    hosts.write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost\n"
                     "10.77.0.1 peer.test Peer  # the kernel\n# 10.9.9.9 hidden\n"
                     "10.77.0.3 peer.test\nnot-an-address foo\n")
    table = names.read_hosts(str(hosts))
    assert table == {"localhost": ["127.0.0.1"], "peer.test": ["10.77.0.1", "10.77.0.3"],
                     "peer": ["10.77.0.1"]}


def test_resolv_conf(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text("# comment\nnameserver 10.77.0.1\nnameserver 10.0.0.53:5353\n"
                    "search lab.test example.test\noptions ndots:2 timeout:1 attempts:3 x\n")
    cfg = names.read_resolv_conf(str(conf))
    assert cfg.nameservers == [("10.77.0.1", 53), ("10.0.0.53", 5353)]
    assert cfg.search == ["lab.test", "example.test"]
    assert (cfg.ndots, cfg.timeout, cfg.attempts) == (2, 1.0, 3)
    missing = names.read_resolv_conf(str(tmp_path / "none"))
    assert (missing.nameservers, missing.timeout, missing.attempts) == ([], 5.0, 2)


def test_search_order_follows_ndots() -> None:
    cfg = names.ResolverConfig(search=["lab.test"], ndots=1)
    assert names._candidates("web", False, cfg) == ["web.lab.test", "web"]
    assert names._candidates("web.x", False, cfg) == ["web.x", "web.x.lab.test"]
    assert names._candidates("web.x", True, cfg) == ["web.x"]  # "web.x." is absolute
    assert names._candidates("web", False, names.ResolverConfig()) == ["web"]


def test_gaierror_codes() -> None:
    import socket

    assert names.gaierror(socket.EAI_NONAME).errno == socket.EAI_NONAME
    assert "Temporary failure" in str(names.gaierror(socket.EAI_AGAIN))
