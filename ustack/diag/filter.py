"""The ``ss`` filter language: ``[ state STATE ... ] [ EXPRESSION ]``.

Grammar (iproute2 ``misc/ssfilter.y``, with the precedence ss documents)::

    filter  := ( ("state" | "exclude" | "excl") STATE )* [ or ]
    or      := and ( ("or" | "|" | "||") and )*             lowest
    and     := unary ( [ "and" | "&" | "&&" ] unary )*      adjacent terms AND-ed
    unary   := ( "not" | "!" ) unary | primary              highest
    primary := "(" or ")"
             | ("src" | "dst") [ "=" | "==" | "eq" ] HOST
             | ("sport" | "dport") [ OP ] PORT
    OP      := = == eq | != ne neq | < lt | > gt | <= le leq | >= ge geq
    HOST    := ADDR[/PLEN][:PORT] | *[:PORT] | [ADDR]:PORT
    PORT    := [:]NUMBER | [:]SERVICE | *

Words are split on blanks inside each argument (``'( dport = :http )'`` is
five words), ``\\`` escapes the next character, and parentheses glued to a word
are split off.  Errors raise :class:`FilterError` naming the offending word.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

from ustack.diag.records import ALL_STATES, STATE_BITS, SocketRecord
from ustack.diag.services import port_from_name

Predicate = Callable[[SocketRecord], bool]


class FilterError(ValueError):
    """A malformed filter.  ``word`` is the offending word ('' at the end)."""

    def __init__(self, message: str, word: str = "") -> None:
        super().__init__(message)
        self.word = word


def _bits(*names: str) -> int:
    return sum(STATE_BITS[n] for n in names)


# state words (case-insensitive), iproute2 misc/ss.c scan_state()
STATE_WORDS: dict[str, int] = {
    "established": _bits("ESTAB"),
    "syn-sent": _bits("SYN-SENT"),
    "syn-recv": _bits("SYN-RECV"),
    "syn-rcv": _bits("SYN-RECV"),
    "fin-wait-1": _bits("FIN-WAIT-1"),
    "fin-wait-2": _bits("FIN-WAIT-2"),
    "time-wait": _bits("TIME-WAIT"),
    "closed": _bits("UNCONN"),
    "close": _bits("UNCONN"),
    "unconnected": _bits("UNCONN"),
    "close-wait": _bits("CLOSE-WAIT"),
    "last-ack": _bits("LAST-ACK"),
    "listening": _bits("LISTEN"),
    "closing": _bits("CLOSING"),
    "all": ALL_STATES,
    "connected": ALL_STATES & ~_bits("UNCONN", "LISTEN"),
    "synchronized": ALL_STATES & ~_bits("UNCONN", "LISTEN", "SYN-SENT"),
    "bucket": _bits("SYN-RECV", "TIME-WAIT"),
    "big": ALL_STATES & ~_bits("SYN-RECV", "TIME-WAIT"),
}
# ss's default: connected sockets except TIME-WAIT and SYN-RECV
DEFAULT_STATES = ALL_STATES & ~_bits("UNCONN", "LISTEN", "TIME-WAIT", "SYN-RECV")
LISTENING_STATES = _bits("LISTEN", "UNCONN")

_OR = {"or", "|", "||"}
_AND = {"and", "&", "&&"}
_NOT = {"not", "!"}
_EQ = {"=", "==", "eq"}
_PORT_OPS = {
    "=": "eq", "==": "eq", "eq": "eq",
    "!=": "ne", "ne": "ne", "neq": "ne",
    "<": "lt", "lt": "lt",
    ">": "gt", "gt": "gt",
    "<=": "le", "le": "le", "leq": "le",
    ">=": "ge", "ge": "ge", "geq": "ge",
}
_KEYWORDS = _OR | _AND | _NOT | set(_PORT_OPS) | {"(", ")", "src", "dst", "sport", "dport"}


def state_mask(word: str) -> int:
    """Bit mask for a state name or group; FilterError for anything else."""
    mask = STATE_WORDS.get(word.lower())
    if mask is None:
        raise FilterError(f'wrong state name: "{word}"', word)
    return mask


def split_words(args: str | Iterable[str]) -> list[str]:
    """Split filter arguments into words the way ss's lexer does."""
    texts = [args] if isinstance(args, str) else list(args)
    words: list[str] = []
    for text in texts:
        current: list[str] = []
        started = False
        i = 0
        while i < len(text):
            ch = text[i]
            if ch == "\\" and i + 1 < len(text):
                current.append(text[i + 1])
                started = True
                i += 2
                continue
            if ch in " \t\r\n":
                if started:
                    words.append("".join(current))
                current, started = [], False
            elif ch in "()":
                if started:
                    words.append("".join(current))
                words.append(ch)
                current, started = [], False
            else:
                current.append(ch)
                started = True
            i += 1
        if started:
            words.append("".join(current))
    return words


def read_filter_file(path: str) -> list[str]:
    """Words of a filter file (``ss -F``): blank and ``#`` lines are skipped."""
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f.read().splitlines() if not line.lstrip().startswith("#")]
    return split_words(lines)


# ---------------------------------------------------------------- addresses

_addr_cache: dict[str, int] = {}


def addr_to_int(addr: str) -> int:
    value = _addr_cache.get(addr)
    if value is None:
        try:
            value = int.from_bytes(socket.inet_aton(addr), "big")
        except OSError:
            value = -1
        if len(_addr_cache) < 1_000_000:
            _addr_cache[addr] = value
    return value


def _parse_prefix(text: str, word: str) -> tuple[int, int]:
    """``193.233.7/24`` -> (0xC1E90700, 24).  A partial address without a
    length covers the octets given (``10.1`` = ``10.1.0.0/16``)."""
    addr, _, plen_text = text.partition("/")
    parts = addr.split(".")
    if not (1 <= len(parts) <= 4) or not all(p.isdigit() and int(p) <= 255 for p in parts):
        try:  # a host name (resolved like ss does for -r-style names)
            if plen_text or not addr or addr[0].isdigit():
                raise OSError
            resolved = socket.gethostbyname(addr)
        except OSError:
            raise FilterError(f'an inet prefix is expected rather than "{word}"', word) from None
        parts = resolved.split(".")
    value = 0
    for i in range(4):
        value = (value << 8) | (int(parts[i]) if i < len(parts) else 0)
    if plen_text:
        if not plen_text.isdigit() or int(plen_text) > 32:
            raise FilterError(f'an inet prefix is expected rather than "{word}"', word)
        plen = int(plen_text)
    else:
        plen = 8 * len(parts)
    mask = ((1 << plen) - 1) << (32 - plen) if plen else 0
    return value & mask, plen


def parse_port(text: str, word: str) -> int:
    """``:22``, ``22``, ``:http``, ``http`` -> port; ``*``/empty -> -1 (any)."""
    if text.startswith(":"):
        text = text[1:]
    if text in ("", "*"):
        return -1
    if text.isdigit():
        port = int(text)
        if port > 65535:
            raise FilterError(f'"{word}" does not look like a port', word)
        return port
    named = port_from_name(text)
    if named is None:
        raise FilterError(f'"{word}" does not look like a port', word)
    return named


def parse_host(word: str) -> tuple[int, int, int]:
    """``ADDR[/PLEN][:PORT]`` -> (network, prefix length, port or -1).
    A prefix length of 0 matches every address."""
    if word.startswith("["):
        addr, sep, rest = word[1:].partition("]")
        if not sep:
            raise FilterError(f'an inet prefix is expected rather than "{word}"', word)
        port_text = rest
    elif word.startswith("*"):
        addr, port_text = "", word[1:]
    else:
        slash = word.find("/")
        colon = word.rfind(":", slash if slash >= 0 else 0)
        if colon >= 0:
            addr, port_text = word[:colon], word[colon:]
        else:
            addr, port_text = word, ""
    port = parse_port(port_text, word) if port_text else -1
    if addr in ("", "*"):
        return 0, 0, port
    network, plen = _parse_prefix(addr, word)
    return network, plen, port


# ---------------------------------------------------------------- predicates


def _host_predicate(which: str, word: str) -> Predicate:
    network, plen, port = parse_host(word)
    mask = ((1 << plen) - 1) << (32 - plen) if plen else 0
    local = which == "src"
    to_int = addr_to_int

    if plen == 0 and port < 0:
        return lambda r: True
    if plen == 0:
        if local:
            return lambda r: r.local_port == port
        return lambda r: r.remote_port == port
    if local:
        return lambda r: (port < 0 or r.local_port == port) and (
            to_int(r.local_addr) & mask
        ) == network
    return lambda r: (port < 0 or r.remote_port == port) and (
        to_int(r.remote_addr) & mask
    ) == network


def _port_predicate(which: str, op: str, word: str) -> Predicate:
    port = parse_port(word, word)
    local = which == "sport"
    if op in ("eq", "ne"):
        if port < 0:
            return (lambda r: True) if op == "eq" else (lambda r: False)
        if local:
            if op == "eq":
                return lambda r: r.local_port == port
            return lambda r: r.local_port != port
        if op == "eq":
            return lambda r: r.remote_port == port
        return lambda r: r.remote_port != port
    if local:
        table: dict[str, Predicate] = {
            "lt": lambda r: r.local_port < port,
            "gt": lambda r: r.local_port > port,
            "le": lambda r: r.local_port <= port,
            "ge": lambda r: r.local_port >= port,
        }
    else:
        table = {
            "lt": lambda r: r.remote_port < port,
            "gt": lambda r: r.remote_port > port,
            "le": lambda r: r.remote_port <= port,
            "ge": lambda r: r.remote_port >= port,
        }
    return table[op]


# ---------------------------------------------------------------- parser


class Node(NamedTuple):
    """Parsed expression tree: ``op`` is and/or/not/src/dst/sport/dport."""

    op: str
    args: tuple[Any, ...]

    def __str__(self) -> str:
        if self.op in ("and", "or"):
            return "(" + f" {self.op} ".join(str(a) for a in self.args) + ")"
        if self.op == "not":
            return f"not {self.args[0]}"
        return " ".join(str(a) for a in self.args).join((f"{self.op} ", ""))


#: deepest nesting of "(" and "not" accepted: the parser, the compiler and
#: the predicate recurse once per level, and must stay far from Python's
#: recursion limit (iproute2's bison parser stops at its own stack depth too)
MAX_DEPTH = 100


class _Parser:
    def __init__(self, words: Sequence[str]) -> None:
        self.words = list(words)
        self.pos = 0
        self.depth = 0

    def enter(self, word: str) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise FilterError(f'filter nested deeper than {MAX_DEPTH} levels at "{word}"', word)

    def peek(self) -> str | None:
        return self.words[self.pos] if self.pos < len(self.words) else None

    def take(self) -> str:
        word = self.peek()
        if word is None:
            last = self.words[-1] if self.words else ""
            raise FilterError(f'filter ends too early after "{last}"', last)
        self.pos += 1
        return word

    def parse_or(self) -> Node:
        terms = [self.parse_and()]
        while self.peek() in _OR:
            self.take()
            terms.append(self.parse_and())
        return terms[0] if len(terms) == 1 else Node("or", tuple(terms))

    def parse_and(self) -> Node:
        terms = [self.parse_unary()]
        while True:
            word = self.peek()
            if word is None or word == ")" or word in _OR:
                break
            if word in _AND:
                self.take()
            terms.append(self.parse_unary())
        return terms[0] if len(terms) == 1 else Node("and", tuple(terms))

    def parse_unary(self) -> Node:
        if self.peek() in _NOT:
            self.enter(self.take())
            node = Node("not", (self.parse_unary(),))
            self.depth -= 1
            return node
        return self.parse_primary()

    def parse_primary(self) -> Node:
        word = self.take()
        if word == "(":
            self.enter(word)
            node = self.parse_or()
            if self.peek() != ")":
                bad = self.peek()
                if bad is None:
                    raise FilterError('missing ")" to close "("', "(")
                raise FilterError(f'unexpected word "{bad}" where ")" was expected', bad)
            self.take()
            self.depth -= 1
            return node
        if word in ("src", "dst"):
            value = self.take()
            if value in _EQ:
                value = self.take()
            if value in _KEYWORDS:
                raise FilterError(f'an address is expected after "{word}", not "{value}"', value)
            return Node(word, (value,))
        if word in ("sport", "dport"):
            value = self.take()
            op = "eq"
            if value in _PORT_OPS:
                op = _PORT_OPS[value]
                value = self.take()
            if value in _KEYWORDS:
                raise FilterError(f'a port is expected after "{word}", not "{value}"', value)
            return Node(word, (op, value))
        if word in ("state", "exclude", "excl"):
            raise FilterError(f'"{word}" must come before the rest of the filter', word)
        raise FilterError(f'unexpected word "{word}" in filter', word)


def compile_node(node: Node) -> Predicate:
    """Turn a parsed expression into a predicate over records."""
    if node.op == "and":
        preds = [compile_node(a) for a in node.args]
        if len(preds) == 2:
            a, b = preds
            return lambda r: a(r) and b(r)
        return lambda r: all(p(r) for p in preds)
    if node.op == "or":
        preds = [compile_node(a) for a in node.args]
        if len(preds) == 2:
            a, b = preds
            return lambda r: a(r) or b(r)
        return lambda r: any(p(r) for p in preds)
    if node.op == "not":
        inner = compile_node(node.args[0])
        return lambda r: not inner(r)
    if node.op in ("src", "dst"):
        return _host_predicate(node.op, node.args[0])
    return _port_predicate(node.op, node.args[0], node.args[1])


class Filter:
    """A parsed filter: ``states`` (bit mask, None when no state word was
    given), the expression tree and its compiled predicate (None = match all)."""

    def __init__(
        self, states: int | None, expr: Node | None, predicate: Predicate | None, text: str
    ) -> None:
        self.states = states
        self.expr = expr
        self.predicate = predicate
        self.text = text

    def __repr__(self) -> str:
        return f"Filter(states={self.states!r}, expr={self.expr!r}, text={self.text!r})"

    def state_mask(self, *, all: bool = False, listening: bool = False) -> int:
        """The states to show, with ss's defaults for ``-a`` / ``-l``."""
        if self.states is not None:
            return self.states
        if all:
            return ALL_STATES
        if listening:
            return LISTENING_STATES
        return DEFAULT_STATES

    def apply(
        self, records: Iterable[SocketRecord], *, all: bool = False, listening: bool = False
    ) -> list[SocketRecord]:
        mask = self.state_mask(all=all, listening=listening)
        bits = STATE_BITS
        pred = self.predicate
        if mask == ALL_STATES:
            selected = list(records)
        else:
            selected = [r for r in records if bits.get(r.state, 0) & mask]
        if pred is None:
            return selected
        return [r for r in selected if pred(r)]


def parse(args: str | Iterable[str]) -> Filter:
    """Parse a filter given as one string or as argv words."""
    words = split_words(args)
    text = " ".join(words)
    states: int | None = None
    i = 0
    while i < len(words) and words[i] in ("state", "exclude", "excl"):
        if i + 1 >= len(words):
            raise FilterError(f'a state name is expected after "{words[i]}"', words[i])
        mask = state_mask(words[i + 1])
        if words[i] == "state":
            states = (states or 0) | mask
        else:
            states = (ALL_STATES if states is None else states) & ~mask
        i += 2
    if i == len(words):
        return Filter(states, None, None, text)
    parser = _Parser(words[i:])
    expr = parser.parse_or()
    if parser.peek() is not None:
        bad = parser.take()
        raise FilterError(f'unexpected word "{bad}" in filter', bad)
    return Filter(states, expr, compile_node(expr), text)


def select(
    records: Iterable[SocketRecord],
    expression: str | Iterable[str] = "",
    *,
    all: bool = False,
    listening: bool = False,
) -> list[SocketRecord]:
    """Records matching an ss filter, e.g.
    ``select(records, "state established ( dport = :http )")``.

    Without a ``state`` word the ss defaults apply: connected sockets except
    TIME-WAIT and SYN-RECV; ``all=True`` is ``ss -a``, ``listening=True`` ``ss -l``.
    """
    return parse(expression).apply(records, all=all, listening=listening)
