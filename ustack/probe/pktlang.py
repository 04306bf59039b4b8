"""packetdrill's script language, parsed into the probe's :class:`Event` list.

Read for ideas from packetdrill's ``lexer.l``/``parser.y`` (google/packetdrill,
GPL-2.0; nothing copied).  What a script may contain, one *statement* per
line (a statement continues over lines while brackets are open, inside a
backtick command or a ``%{ ... }%`` block):

* ``--option=value`` lines before the first event: ``--tolerance_usecs``,
  ``--tolerance_percent``, ``--tcp_ts_tick_usecs``; others are recorded and
  reported as unsupported by the runner (``--ip_version=ipv6`` ...).
* comments ``// ...`` and ``/* ... */`` (and the probe's own ``# ...``
  outside code blocks);
* times: ``0.100`` absolute, ``+0.1`` relative, ``*`` any, ``A~B`` ranges, and
  for system calls ``START...END``: the call blocks and returns at ``END``
  (absolute or, with a relative start, relative to the same base);
* packet lines ``< FLAGS ...``/``> FLAGS ...`` (see :mod:`.packet`; ``<...>``
  means "options not checked");
* system calls ``name(args) = RESULT [ERRNO] [(note)]``;
* backtick shell commands and ``%{ python }%`` blocks;
* the probe's own directives (``peer``, ``sysctl``, ``probe``, ``> nothing``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ustack.probe.packet import ScriptSyntaxError

# ---------------------------------------------------------------- values


class Symbol(str):
    """A bare word in a system-call argument (``SOL_SOCKET``, ``O_NONBLOCK``)."""


@dataclass(frozen=True, slots=True)
class Ellipsis_:
    """``...``: a value packetdrill fills in (addresses, buffers) or does not check."""

    def __repr__(self) -> str:
        return "..."


ELLIPSIS = Ellipsis_()


@dataclass(slots=True)
class BinOr:
    """``A|B|C``."""

    parts: list[Any]


@dataclass(slots=True)
class Call:
    """``htons(8080)``, ``inet_addr("1.2.3.4")``, ``msg_iov(1)`` (as a struct key)."""

    name: str
    args: list[Any]


@dataclass(slots=True)
class Struct:
    """``{a=1, b=[2]}``; positional members get keys ``0``, ``1``, ..."""

    fields: dict[str | int, Any]


@dataclass(slots=True)
class SyscallSpec:
    name: str
    args: list[Any]
    result: Any  # int, Symbol or ELLIPSIS
    errno: str | None = None
    note: str | None = None
    #: blocking call: (relative?, end seconds); None = expected to return at once
    end: tuple[bool, float] | None = None

    def __str__(self) -> str:
        return f"{self.name}(...)"


# ---------------------------------------------------------------- lexer
_TOKEN = re.compile(r"""
    (?P<ws>\s+)
  | (?P<ellipsis>\.\.\.)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?0[xX][0-9a-fA-F]+|-?\d+)
  | (?P<word>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<punct>[\[\]{}(),=|])
""", re.VERBOSE)


def _tokens(text: str) -> list[tuple[str, str]]:
    out = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ScriptSyntaxError(f"unexpected character {text[pos]!r} in {text.strip()!r}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.toks = _tokens(text)
        self.i = 0

    def peek(self) -> tuple[str, str] | None:
        return self.toks[self.i] if self.i < len(self.toks) else None

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok is None:
            raise ScriptSyntaxError(f"unexpected end, expected {value or 'a value'}")
        if value is not None and tok[1] != value:
            raise ScriptSyntaxError(f"expected {value!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def at(self, value: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[1] == value

    def expr(self) -> Any:
        first = self.term()
        if not self.at("|"):
            return first
        parts = [first]
        while self.at("|"):
            self.take("|")
            parts.append(self.term())
        return BinOr(parts)

    def term(self) -> Any:
        kind, text = self.take()
        if kind == "ellipsis":
            return ELLIPSIS
        if kind == "number":
            return int(text, 0)
        if kind == "string":
            value = bytes(text[1:-1], "utf-8").decode("unicode_escape")
            if self.at("..."):
                self.take("...")
            return value
        if kind == "word":
            if self.at("("):
                self.take("(")
                args = self.list_until(")")
                return Call(text, args)
            return Symbol(text)
        if text == "[":
            return self.list_until("]")
        if text == "{":
            return self.struct()
        raise ScriptSyntaxError(f"unexpected {text!r}")

    def list_until(self, close: str) -> list[Any]:
        items: list[Any] = []
        if self.at(close):
            self.take(close)
            return items
        while True:
            items.append(self.expr())
            if self.at(","):
                self.take(",")
                continue
            self.take(close)
            return items

    def list_until_end(self) -> list[Any]:
        """Comma-separated values up to the end of the text (call arguments)."""
        items: list[Any] = []
        if self.peek() is None:
            return items
        while True:
            items.append(self.expr())
            if self.peek() is None:
                return items
            self.take(",")

    def struct(self) -> Struct:
        fields: dict[str | int, Any] = {}
        n = 0
        if self.at("}"):
            self.take("}")
            return Struct(fields)
        while True:
            value = self.expr()
            if self.at("="):
                self.take("=")
                key = value.name if isinstance(value, Call) else str(value)
                fields[key] = self.expr()
            else:
                fields[n] = value
                n += 1
            if self.at(","):
                self.take(",")
                continue
            self.take("}")
            return Struct(fields)


def parse_expression(text: str) -> Any:
    p = _Parser(text)
    value = p.expr()
    if p.peek() is not None:
        raise ScriptSyntaxError(f"unexpected {p.peek()[1]!r} after the value")  # type: ignore[index]
    return value


_CALL = re.compile(r"^([a-z_][a-z0-9_]*)\s*\(")


def looks_like_syscall(text: str) -> bool:
    return bool(_CALL.match(text)) and "=" in text


def parse_syscall(text: str) -> SyscallSpec:
    """``name(args) = RESULT [ERRNO] [(note)]``."""
    m = _CALL.match(text)
    if m is None:
        raise ScriptSyntaxError(f"not a system call: {text!r}")
    name = m.group(1)
    # the argument list ends at the parenthesis matching the first one
    depth = 0
    end = -1
    in_str = False
    for i in range(m.end() - 1, len(text)):
        c = text[i]
        if c == '"' and text[i - 1] != "\\":
            in_str = not in_str
        if in_str:
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                end = i
                break
    if end < 0:
        raise ScriptSyntaxError(f"unbalanced parentheses in {text!r}")
    p = _Parser(text[m.end():end])
    args = p.list_until_end()
    rest = text[end + 1:].strip()
    if not rest.startswith("="):
        raise ScriptSyntaxError(f"expected '= RESULT' after {name}(...)")
    rest = rest[1:].strip()
    note = None
    nm = re.search(r"\((.*)\)\s*$", rest)
    if nm:
        note = nm.group(1)
        rest = rest[: nm.start()].strip()
    words = rest.split()
    if not words:
        raise ScriptSyntaxError(f"{name}(...) = needs a result")
    result = parse_expression(words[0])
    errno = words[1] if len(words) > 1 else None
    if len(words) > 2:
        raise ScriptSyntaxError(f"unexpected {' '.join(words[2:])!r} after the result")
    if errno is not None and not re.match(r"^E[A-Z0-9]+$", errno):
        raise ScriptSyntaxError(f"bad errno {errno!r}")
    return SyscallSpec(name, args, result, errno, note)


# ---------------------------------------------------------------- statements
@dataclass(slots=True)
class Statement:
    lineno: int
    text: str
    kind: str = "line"  # line, command (backticks), code (%{ }%), option (--x=y)
    time: str = ""  # the time word in front of a command/code block


def split_statements(text: str) -> list[Statement]:
    """Comments removed, multi-line statements joined."""
    out: list[Statement] = []
    i = 0
    n = len(text)
    lineno = 1
    buf: list[str] = []
    start_line = 1
    depth = 0

    def flush() -> None:
        nonlocal buf
        s = "".join(buf).strip()
        if s:
            out.append(Statement(start_line, " ".join(s.split())))
        buf = []

    while i < n:
        c = text[i]
        if c == "\n":
            lineno += 1
            if depth <= 0:
                flush()
                depth = 0
                start_line = lineno
            else:
                buf.append(" ")
            i += 1
            continue
        if not "".join(buf).strip():
            start_line = lineno
        if text.startswith("//", i) or (c == "#" and depth <= 0):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        if text.startswith("/*", i):
            j = text.find("*/", i + 2)
            if j < 0:
                raise ScriptSyntaxError(f"line {lineno}: unterminated /* comment")
            lineno += text.count("\n", i, j)
            i = j + 2
            buf.append(" ")
            continue
        if c == "`":
            j = text.find("`", i + 1)
            if j < 0:
                raise ScriptSyntaxError(f"line {lineno}: unterminated `command`")
            prefix = "".join(buf).strip()
            out.append(Statement(start_line if prefix else lineno, text[i + 1:j],
                                 "command", prefix))
            buf = []
            lineno += text.count("\n", i, j)
            i = j + 1
            start_line = lineno
            continue
        if text.startswith("%{", i):
            j = text.find("}%", i + 2)
            if j < 0:
                raise ScriptSyntaxError(f"line {lineno}: unterminated %{{ code }}%")
            prefix = "".join(buf).strip()
            out.append(Statement(start_line if prefix else lineno, text[i + 2:j], "code",
                                 prefix))
            buf = []
            lineno += text.count("\n", i, j)
            i = j + 2
            start_line = lineno
            continue
        if c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            buf.append(text[i:j + 1])
            i = j + 1
            continue
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        buf.append(c)
        i += 1
    flush()
    for st in out:
        if st.kind == "line" and st.text.startswith("--"):
            st.kind = "option"
    return out


# ---------------------------------------------------------------- times
_NUM = r"\d+(?:\.\d*)?|\.\d+"
_TIME_RE = re.compile(rf"^(\*|\+?(?:{_NUM})(?:~\+?(?:{_NUM}))?)(?:\.\.\.(\+?(?:{_NUM})))?$")


def split_time(line: str) -> tuple[str | None, str | None, str]:
    """``"+0...0.2 read(...)"`` -> (``"+0"``, ``"0.2"``, ``"read(...)"``)."""
    first, _, rest = line.partition(" ")
    m = _TIME_RE.match(first)
    if m is None:
        # "+.1 ...0.2 read" or "+.1... 0.2"
        return None, None, line
    return m.group(1), m.group(2), rest.strip()


@dataclass(slots=True)
class Options:
    """``--name=value`` lines of a script."""

    values: dict[str, str] = field(default_factory=dict)
