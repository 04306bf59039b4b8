"""The ss filter language: every example of ss-reference.md, precedence,
synonyms, prefixes, service names, state groups and the error cases."""

from __future__ import annotations

import socket

import pytest

from ustack.diag import filter as ssfilter
from ustack.diag.filter import (
    DEFAULT_STATES,
    FilterError,
    Node,
    parse,
    select,
    split_words,
)
from ustack.diag.records import ALL_STATES, STATE_BITS, SocketRecord


def rec(
    state: str = "ESTAB",
    laddr: str = "10.77.0.2",
    lport: int = 41234,
    raddr: str = "10.77.0.1",
    rport: int = 80,
) -> SocketRecord:
    return SocketRecord(state, laddr, lport, raddr, rport, 0, 0)


def matches(expr: str, record: SocketRecord) -> bool:
    return bool(select([record], expr, all=True))


def states_of(expr: str, **kw: bool) -> set[str]:
    mask = parse(expr).state_mask(**kw)
    return {name for name, bit in STATE_BITS.items() if mask & bit}


# ------------------------------------------------------------ reference examples

RECORDS = [
    rec("ESTAB", "10.77.0.2", 41000, "10.77.0.1", 25),  # 0 smtp client
    rec("ESTAB", "10.77.0.2", 25, "10.77.0.1", 50000),  # 1 smtp server side
    rec("ESTAB", "10.77.0.2", 80, "193.233.7.20", 40000),  # 2 http server side
    rec("FIN-WAIT-1", "10.77.0.2", 80, "193.233.7.21", 40001),  # 3
    rec("FIN-WAIT-1", "10.77.0.2", 443, "193.233.8.1", 40002),  # 4 outside /24
    rec("CLOSING", "10.77.0.2", 41001, "192.168.1.5", 9999),  # 5
    rec("ESTAB", "192.168.119.103", 16021, "192.168.119.113", 80),  # 6
    rec("ESTAB", "192.168.119.103", 16022, "192.168.119.113", 443),  # 7
    rec("LISTEN", "10.77.0.2", 22, "0.0.0.0", 0),  # 8
    rec("TIME-WAIT", "10.77.0.2", 41002, "10.77.0.1", 80),  # 9
    rec("ESTAB", "10.77.0.2", 22, "10.77.0.1", 33000),  # 10 ssh server side
    rec("SYN-RECV", "10.77.0.2", 80, "10.77.0.9", 1024),  # 11
]


def picked(words: list[str], **kw: bool) -> list[int]:
    chosen = select(RECORDS, words, **kw)
    return [RECORDS.index(r) for r in chosen]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        # ss -o state established '( dport = :smtp or sport = :smtp )'
        (["state", "established", "( dport = :smtp or sport = :smtp )"], [0, 1]),
        # ss -o state established '( dport = :http or sport = :http )'
        (["state", "established", "( dport = :http or sport = :http )"], [2, 6]),
        # ss -o state fin-wait-1 '( sport = :http or sport = :https )' dst 193.233.7/24
        (["state", "fin-wait-1", "( sport = :http or sport = :https )", "dst", "193.233.7/24"],
         [3]),
        # ss -4 state closing
        (["state", "closing"], [5]),
        # ss dst 192.168.1.5
        (["dst", "192.168.1.5"], [5]),
        # ss dst 192.168.119.113:http
        (["dst", "192.168.119.113:http"], [6]),
        # ss dst 192.168.119.113:443
        (["dst", "192.168.119.113:443"], [7]),
        # ss src 192.168.119.103:16021
        (["src", "192.168.119.103:16021"], [6]),
        # ss sport = :http  (default states: no LISTEN, TIME-WAIT, SYN-RECV)
        (["sport", "=", ":http"], [2, 3]),
        # ss dport = :http
        (["dport", "=", ":http"], [6]),
        # ss dport \> :1024   (the shell passes ">")
        (["dport", ">", ":1024"], [1, 2, 3, 4, 5, 10]),
        # ss sport \< :32000
        (["sport", "<", ":32000"], [1, 2, 3, 4, 6, 7, 10]),
        # ss sport eq :22
        (["sport", "eq", ":22"], [10]),
        # ss dport != :22
        (["dport", "!=", ":22"], [0, 1, 2, 3, 4, 5, 6, 7, 10]),
        # ss state connected sport = :http
        (["state", "connected", "sport", "=", ":http"], [2, 3, 11]),
        # ss \( sport = :http or sport = :https \)
        (["(", "sport", "=", ":http", "or", "sport", "=", ":https", ")"], [2, 3, 4]),
    ],
)
def test_reference_examples(argv: list[str], expected: list[int]) -> None:
    assert picked(argv) == expected


def test_reference_option_examples_states() -> None:
    # ss -t -a: everything; ss -l / ss -pl: listening (and closed)
    assert picked([], all=True) == list(range(len(RECORDS)))
    assert picked([], listening=True) == [8]


# ------------------------------------------------------------ precedence


def test_or_is_lowest_and_binds_tighter() -> None:
    # a or b and c  ==  a or (b and c)
    tree = parse("sport = :22 or dport = :80 and src 10.0.0.1").expr
    assert tree is not None and tree.op == "or"
    assert tree.args[1].op == "and"
    r = rec(lport=22, rport=1, laddr="10.77.0.2")  # a true, b false, c false
    assert matches("sport = :22 or dport = :80 and src 10.0.0.1", r)
    assert not matches("( sport = :22 or dport = :80 ) and src 10.0.0.1", r)


def test_not_binds_tightest() -> None:
    tree = parse("not sport = :22 and dport = :80").expr
    assert tree == Node(
        "and", (Node("not", (Node("sport", ("eq", ":22")),)), Node("dport", ("eq", ":80")))
    )
    r = rec(lport=22, rport=80)
    assert not matches("not sport = :22 and dport = :80", r)
    assert matches("not ( sport = :22 and dport = :81 )", r)
    assert matches("! ! sport = :22", r)


def test_adjacent_terms_are_anded() -> None:
    r = rec(lport=22, rport=80)
    assert matches("sport = :22 dport = :80", r)
    assert not matches("sport = :22 dport = :81", r)
    assert parse("sport = :22 dport = :80").expr == parse("sport = :22 and dport = :80").expr


def test_parentheses_group_and_nest() -> None:
    r = rec(lport=22, rport=80)
    assert matches("( ( sport = :1 or sport = :22 ) and ( dport = :80 ) )", r)
    assert not matches("( sport = :1 or sport = :2 ) dport = :80", r)


@pytest.mark.parametrize("word", ["or", "|", "||"])
def test_or_synonyms(word: str) -> None:
    assert matches(f"sport = :1 {word} sport = :22", rec(lport=22))


@pytest.mark.parametrize("word", ["and", "&", "&&"])
def test_and_synonyms(word: str) -> None:
    assert matches(f"sport = :22 {word} dport = :80", rec(lport=22, rport=80))
    assert not matches(f"sport = :22 {word} dport = :81", rec(lport=22, rport=80))


@pytest.mark.parametrize("word", ["not", "!"])
def test_not_synonyms(word: str) -> None:
    assert not matches(f"{word} sport = :22", rec(lport=22))
    assert matches(f"{word} sport = :23", rec(lport=22))


@pytest.mark.parametrize(
    ("ops", "truth"),
    [
        (["=", "==", "eq"], {21: False, 22: True, 23: False}),
        (["!=", "ne", "neq"], {21: True, 22: False, 23: True}),
        (["<", "lt"], {21: True, 22: False, 23: False}),
        ([">", "gt"], {21: False, 22: False, 23: True}),
        (["<=", "le", "leq"], {21: True, 22: True, 23: False}),
        ([">=", "ge", "geq"], {21: False, 22: True, 23: True}),
    ],
)
def test_port_operator_synonyms(ops: list[str], truth: dict[int, bool]) -> None:
    for op in ops:
        for port, expected in truth.items():
            assert matches(f"sport {op} :22", rec(lport=port)) is expected, (op, port)
            assert matches(f"dport {op} 22", rec(rport=port)) is expected, (op, port)


@pytest.mark.parametrize("op", ["", "=", "==", "eq"])
def test_host_operators(op: str) -> None:
    assert matches(f"dst {op} 10.77.0.1", rec(raddr="10.77.0.1"))
    assert not matches(f"src {op} 10.77.0.1", rec(laddr="10.77.0.2"))


# ------------------------------------------------------------ addresses and ports


@pytest.mark.parametrize(
    ("word", "inside", "outside"),
    [
        ("193.233.7/24", "193.233.7.200", "193.233.8.1"),
        ("10/8", "10.200.1.1", "11.0.0.1"),
        ("10.1", "10.1.255.3", "10.2.0.1"),  # partial without length: the octets given
        ("172.16.0.0/12", "172.31.255.255", "172.32.0.0"),
        ("192.168.1.5", "192.168.1.5", "192.168.1.6"),
        ("192.168.1.5/32", "192.168.1.5", "192.168.1.4"),
        ("0/0", "1.2.3.4", None),
        ("*", "1.2.3.4", None),
        ("localhost", "127.0.0.1", "127.0.0.2"),
    ],
)
def test_address_prefixes(word: str, inside: str, outside: str | None) -> None:
    assert matches(f"dst {word}", rec(raddr=inside))
    if outside is not None:
        assert not matches(f"dst {word}", rec(raddr=outside))


def test_wildcard_address_with_port_and_brackets() -> None:
    assert matches("dst *:80", rec(rport=80))
    assert not matches("dst *:80", rec(rport=81))
    assert matches("src [10.77.0.2]:41234", rec())
    assert matches("dst 10.77.0.0/16:http", rec(raddr="10.77.9.9", rport=80))
    assert not matches("dst 10.77.0.0/16:http", rec(raddr="10.78.0.1", rport=80))


@pytest.mark.parametrize(
    ("name", "port"), [("http", 80), ("https", 443), ("ssh", 22), ("smtp", 25), ("domain", 53)]
)
def test_service_names(name: str, port: int) -> None:
    for form in (f":{name}", name):
        assert matches(f"dport = {form}", rec(rport=port))
        assert not matches(f"dport = {form}", rec(rport=port + 1))


def test_service_names_without_etc_services(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str, proto: str = "tcp") -> int:
        raise OSError("service/proto not found")

    monkeypatch.setattr(socket, "getservbyname", missing)
    assert matches("sport = :ssh", rec(lport=22))
    assert matches("dport = :https", rec(rport=443))
    with pytest.raises(FilterError):
        parse("dport = :no-such-service")


def test_numeric_ports_with_and_without_colon() -> None:
    assert matches("sport = 41234", rec())
    assert matches("sport = :41234", rec())
    assert matches("sport = *", rec())


# ------------------------------------------------------------ states


def test_state_names_and_groups() -> None:
    every = set(STATE_BITS) - {"UNKNOWN"}
    assert states_of("state all") == every
    assert states_of("state connected") == every - {"UNCONN", "LISTEN"}
    assert states_of("state synchronized") == every - {"UNCONN", "LISTEN", "SYN-SENT"}
    assert states_of("state bucket") == {"SYN-RECV", "TIME-WAIT"}
    assert states_of("state big") == every - {"SYN-RECV", "TIME-WAIT"}
    for word, name in [
        ("established", "ESTAB"), ("syn-sent", "SYN-SENT"), ("syn-recv", "SYN-RECV"),
        ("syn-rcv", "SYN-RECV"), ("fin-wait-1", "FIN-WAIT-1"), ("fin-wait-2", "FIN-WAIT-2"),
        ("time-wait", "TIME-WAIT"), ("closed", "UNCONN"), ("close-wait", "CLOSE-WAIT"),
        ("last-ack", "LAST-ACK"), ("listening", "LISTEN"), ("closing", "CLOSING"),
        ("ESTABLISHED", "ESTAB"), ("Time-Wait", "TIME-WAIT"),
    ]:
        assert states_of(f"state {word}") == {name}, word


def test_state_defaults_like_ss() -> None:
    every = set(STATE_BITS) - {"UNKNOWN"}
    assert states_of("") == every - {"UNCONN", "LISTEN", "TIME-WAIT", "SYN-RECV"}
    assert parse("").state_mask() == DEFAULT_STATES
    assert states_of("", all=True) == every
    assert states_of("", listening=True) == {"LISTEN", "UNCONN"}
    # an explicit state word wins over -a / -l
    assert states_of("state time-wait", all=True) == {"TIME-WAIT"}


def test_repeated_state_words_are_ored_and_exclude_starts_from_all() -> None:
    assert states_of("state established state listening") == {"ESTAB", "LISTEN"}
    every = set(STATE_BITS) - {"UNKNOWN"}
    assert states_of("exclude listening") == every - {"LISTEN"}
    assert states_of("excl bucket exclude closed") == every - {"SYN-RECV", "TIME-WAIT", "UNCONN"}
    assert states_of("state established exclude established") == set()
    assert parse("exclude all").state_mask() == 0 and ALL_STATES != 0


# ------------------------------------------------------------ words


def test_word_splitting() -> None:
    assert split_words(["state", "established", "( dport = :http )"]) == [
        "state", "established", "(", "dport", "=", ":http", ")"
    ]
    assert split_words("(sport = :22)") == ["(", "sport", "=", ":22", ")"]
    assert split_words(r"dport \> :1024") == ["dport", ">", ":1024"]
    assert split_words("\tsport\n=\t22 ") == ["sport", "=", "22"]


# ------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("expr", "word"),
    [
        ("foo", "foo"),
        ("sport = :22 bogus", "bogus"),
        ("state listen", "listen"),
        ("state", "state"),
        ("exclude nonsense", "nonsense"),
        ("sport", "sport"),
        ("sport =", "="),
        ("sport = and", "and"),
        ("dst", "dst"),
        ("dst = or", "or"),
        ("dport != :no-such-service", ":no-such-service"),
        ("dport = 70000", "70000"),
        ("dst 300.1.2.3", "300.1.2.3"),
        ("dst 10.0.0.0/33", "10.0.0.0/33"),
        ("dst 10.0.0.1.5", "10.0.0.1.5"),
        ("( sport = :22", "("),
        ("sport = :22 )", ")"),
        ("( sport = :22 dport", "dport"),
        ("and sport = :22", "and"),
        ("or", "or"),
        ("sport = :22 or", "or"),
        ("not", "not"),
        ("( )", ")"),
        ("sport = :22 state established", "state"),
        ("dst [10.0.0.1", "[10.0.0.1"),
    ],
)
def test_errors_name_the_offending_word(expr: str, word: str) -> None:
    with pytest.raises(FilterError) as info:
        parse(expr)
    assert info.value.word == word
    assert word in str(info.value)
    assert "\n" not in str(info.value)


def test_filter_error_is_a_value_error() -> None:
    assert issubclass(FilterError, ValueError)
    assert ssfilter.FilterError is FilterError
