"""``ustack ss``: ss(8) for ustack's own sockets, read live from every running stack.

Options are parsed by hand (ss's getopt behaviour: combined short flags such
as ``-tanoiem``, options anywhere among the filter words, ``--`` ends them),
so that argparse never sees filter words like ``!`` or ``(``.  This module
imports only what the listing needs; ``ustack.cli`` routes ``ss`` here before
building the full parser, keeping startup cheap.
"""

from __future__ import annotations

import sys
from typing import Any

USAGE = """\
Usage: ustack ss [ OPTIONS ] [ FILTER ]
Show the TCP connections and listeners of every running ustack stack, read
from each stack's diagnostics endpoint (see docs/architecture.md, "diag").

   -h, --help          this message
   -V, --version       output version information
   -n, --numeric       don't resolve service names
   -r, --resolve       resolve host names
   -a, --all           display all sockets
   -l, --listening     display listening sockets
   -o, --options       show timer information
   -e, --extended      show detailed socket information (implies -o)
   -m, --memory        show socket memory usage
   -p, --processes     show the process (stack) owning the socket, and one
                       "# stack pid= netns= iface= address=" line per stack
       --stack=PID     only the stack of process PID
       --iface=IF      only stacks on interface IF
   -i, --info          show internal TCP information
   -s, --summary       show socket usage summary
   -4, --ipv4          display only IP version 4 sockets (all ustack sockets)
   -6, --ipv6          display only IP version 6 sockets (ustack has none)
   -t, --tcp           display only TCP sockets
   -u, --udp           display only UDP sockets (UNCONN ones with -a or -l)
   -H, --no-header     suppress header line
   -O, --oneline       socket's data printed on a single line
   -j, --json          one JSON array of socket objects (iproute2's ss has no
                       -j; ip -j's shape): keys are the text output's labels
                       (recv_q, local_address, local_port, peer_address, ...),
                       times in ms, rates in bit/s, -o -e -m -i -p add their
                       groups (timer:{name,expire_ms,retrans}, uid ino sk
                       shutdown, skmem:{r,rb,...}, the -i figures with pairs
                       split as ss.c names them: snd_wscale rcv_wscale, rtt
                       rttvar, retrans retrans_total), every key present;
                       ports and addresses always numeric; with -s: one
                       summary object instead
   -F, --filter=FILE   read filter information from FILE ("-" = stdin)

   FILTER := [ state STATE-FILTER ] [ EXPRESSION ]
   STATE-FILTER := {all|connected|synchronized|bucket|big|TCP-STATES}
     TCP-STATES := {established|syn-sent|syn-recv|fin-wait-{1,2}|time-wait|closed|
                    close-wait|last-ack|listening|closing}
      connected := all except closed and listening
   synchronized := connected except syn-sent
         bucket := {syn-recv|time-wait}
            big := all except syn-recv and time-wait
   EXPRESSION: src|dst [=] ADDR[/PLEN][:PORT], sport|dport OP PORT,
     OP in = == eq != ne neq < lt > gt <= le leq >= ge geq; and & && (or
     juxtaposition), or | ||, not !, ( ).  Partial prefixes (10.1/16), *,
     ports as :22, 22 or :ssh.
   Default states: connected except time-wait and syn-recv; -a all; -l
   listening (and closed).

What differs from ss, because the concept is the kernel's:
   -w -x -d -S -M -0 --vsock --tipc --xdp  ustack has only TCP and UDP: empty output
   -6                  ustack is IPv4 only: empty output
   -K -E -D -T -b -Z -z -N --tos --cgroup --inet-sockopt  not supported
   -p                  users:(("NAME",pid=PID,fd=ID)): fd is the connection's
                       ustack serial number (no kernel file descriptor exists)
   -e                  ino: the same serial (no inode); sk: the object id;
                       uid: the stack process's uid
   -m                  skmem:(r=unread bytes, rb=receive buffer, t=w=unacked
                       and unsent bytes, tb=send buffer, f o bl = 0, d=drops)
   -s                  counts ustack's sockets only; RAW/UDP/FRAG/IPv6 are 0;
                       as ss computes it from /proc/net/sockstat, closed
                       includes TIME-WAIT and estab includes CLOSE-WAIT
                       (kernel CurrEstab); orphaned is always 0
   -o                  timer names as ss: on keepalive timewait persist, and
                       delack (the kernel never reports that one)
   filter words autobound, dev, fwmark, cgroup: not supported
   filter nesting      at most 100 levels of ( and not (ss: its parser's stack)
   endpoints           a run directory that is a symlink, not yours or root's,
                       or group/world-writable is skipped with a warning, as
                       is a stack of another uid or one answering garbage
"""

_LONG = {
    "--help": "h", "--version": "V", "--numeric": "n", "--resolve": "r", "--all": "a",
    "--listening": "l", "--options": "o", "--extended": "e", "--memory": "m",
    "--processes": "p", "--info": "i", "--summary": "s", "--ipv4": "4", "--ipv6": "6",
    "--tcp": "t", "--udp": "u", "--raw": "w", "--unix": "x", "--dccp": "d", "--sctp": "S",
    "--mptcp": "M", "--packet": "0", "--no-header": "H", "--oneline": "O", "--json": "j",
    "--filter": "F", "--family": "f", "--query": "A", "--socket": "A",
    "--vsock": "v", "--tipc": "v", "--xdp": "v",
}
_FLAGS = set("hVnraloempis46tuwxdSM0HOjv")
_WITH_ARG = set("FfA")
_OTHER_TABLES = set("uwxdSM0v")


class UsageError(Exception):
    pass


def parse_argv(argv: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Split argv into option letters (with values for -F/-f/-A) and filter words."""
    opts: dict[str, Any] = {"queries": []}
    words: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if arg == "--":
            words.extend(argv[i:])
            break
        if arg.startswith("--"):
            name, eq, value = arg.partition("=")
            if name in ("--stack", "--iface"):  # ustack's: which stack(s) to ask
                if not eq:
                    if i >= len(argv):
                        raise UsageError(f'option "{name}" requires an argument')
                    value = argv[i]
                    i += 1
                if name == "--stack" and not value.isdigit():
                    raise UsageError(f'--stack wants a pid, not "{value}"')
                opts[name[2:]] = value
                continue
            letter = _LONG.get(name)
            if letter is None:
                raise UsageError(f'unrecognized option "{arg}"')
            if letter in _WITH_ARG:
                if not eq:
                    if i >= len(argv):
                        raise UsageError(f'option "{name}" requires an argument')
                    value = argv[i]
                    i += 1
                _set_arg(opts, letter, value)
            else:
                opts[letter] = True
            continue
        if arg.startswith("-") and len(arg) > 1:
            j = 1
            while j < len(arg):
                letter = arg[j]
                j += 1
                if letter in _WITH_ARG:
                    value = arg[j:]
                    if not value:
                        if i >= len(argv):
                            raise UsageError(f'option "-{letter}" requires an argument')
                        value = argv[i]
                        i += 1
                    _set_arg(opts, letter, value)
                    break
                if letter not in _FLAGS:
                    raise UsageError(f'invalid option -- "{letter}"')
                opts[letter] = True
            continue
        words.append(arg)
    return opts, words


def _set_arg(opts: dict[str, Any], letter: str, value: str) -> None:
    if letter == "F":
        if "F" in opts:
            raise UsageError("more than one filter file")
        opts["F"] = value
    elif letter == "f":
        family = value.lower()
        if family in ("inet", "4"):
            opts["4"] = True
        elif family in ("inet6", "6"):
            opts["6"] = True
        elif family in ("link", "unix", "netlink", "vsock", "tipc", "xdp"):
            opts["v"] = True
        else:
            raise UsageError(f'"{value}" is an invalid family')
    else:  # -A QUERY
        for q in value.split(","):
            if q in ("all", "inet", "tcp"):
                opts["t"] = True
            else:
                opts["v"] = True


def _read_filter_file(path: str) -> list[str]:
    from ustack.diag.filter import split_words

    try:
        if path == "-":
            text = sys.stdin.buffer.read().decode("utf-8")
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as exc:
        raise UsageError(f"cannot read filter file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"filter file {path} is not UTF-8 text: {exc.reason} "
                         f"at byte {exc.start}") from None
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    return split_words(lines)


def _table_count(opts: dict[str, Any]) -> int:
    """How many of ss's socket tables the options select (none given: all)."""
    singles = sum(1 for c in "tuwdSM" if opts.get(c))
    # -x is unix stream/dgram/seqpacket, -0 packet raw/dgram, vsock/tipc/xdp several
    multiples = sum(2 for c in "x0v" if opts.get(c))
    return singles + multiples if singles + multiples else 99


def _terminal_width() -> int | None:
    """Like ss: spread the columns over the terminal's width, none for a pipe."""
    if not sys.stdout.isatty():
        return None
    import os

    try:
        return os.get_terminal_size(sys.stdout.fileno()).columns or None
    except OSError:
        return None


def run(argv: list[str]) -> int:
    import gc

    gc.disable()  # short-lived; the collector only slows building 50,000 rows
    try:
        opts, words = parse_argv(argv)
    except UsageError as exc:
        print(f"ustack ss: {exc} (see ustack ss --help)", file=sys.stderr)
        return 255
    if opts.get("h"):
        sys.stdout.write(USAGE)
        return 0
    if opts.get("V"):
        from ustack import __version__

        print(f"ustack ss, ustack {__version__}")
        return 0

    from ustack.diag.filter import FilterError, parse, split_words

    try:
        if "F" in opts:
            words = split_words(words) + _read_filter_file(opts["F"])
        flt = parse(words)
    except FilterError as exc:
        print(f"ustack ss: {exc}", file=sys.stderr)
        return 255
    except UsageError as exc:
        print(f"ustack ss: {exc}", file=sys.stderr)
        return 255

    from ustack.diag.client import query_stacks, query_stacks_both
    from ustack.diag.format import (
        FormatOptions,
        format_summary,
        format_table,
        single_state,
    )
    from ustack.diag.records import ALL_STATES, STATE_BITS, TABLE_FIELD_COUNT

    paths, identities = _select_stacks(opts)
    tables_other = any(opts.get(c) for c in _OTHER_TABLES)
    table_selected = opts.get("t") or tables_other
    # ustack holds IPv4 TCP and UDP sockets: other tables / IPv6 alone select nothing;
    # no table option means every table, as in ss
    want_tcp = bool(opts.get("t")) or not tables_other
    want_udp = bool(opts.get("u")) or not table_selected
    nothing = not (want_tcp or want_udp) or (opts.get("6") and not opts.get("4"))
    out: list[str] = []

    if opts.get("s"):
        records, udp = ([], []) if nothing else query_stacks_both(
            states=ALL_STATES, detail=False, fields=TABLE_FIELD_COUNT, paths=paths
        )
        if opts.get("j"):  # stdout stays one JSON value
            from ustack.diag.format import format_summary_json

            return _write(format_summary_json(records, udp))
        out.append(format_summary(records, udp))
        if not table_selected and not words:
            return _write("".join(out))

    mask = flt.state_mask(all=bool(opts.get("a")), listening=bool(opts.get("l")))
    if want_udp and not want_tcp and flt.states is None and not (opts.get("a") or opts.get("l")):
        mask = STATE_BITS["ESTAB"]  # ss -u: connected UDP sockets only (no State column)
    fmt = FormatOptions(
        numeric=bool(opts.get("n")),
        resolve=bool(opts.get("r")),
        options=bool(opts.get("o") or opts.get("e")),
        extended=bool(opts.get("e")),
        memory=bool(opts.get("m")),
        processes=bool(opts.get("p")),
        info=bool(opts.get("i")),
        header=not opts.get("H"),
        oneline=bool(opts.get("O")),
        show_state=not single_state(mask),
        # ss shows Netid unless exactly one socket table is selected
        show_netid=_table_count(opts) != 1,
        screen_width=_terminal_width(),
    )
    detail = fmt.detail
    # the plain table needs only state, addresses and queues
    fields = None if detail or fmt.processes else TABLE_FIELD_COUNT
    records = []
    udp = []  # (the -s branch above used these names too)
    text = flt.text if flt.expr else ""
    if not nothing and want_tcp and not want_udp and fields is not None \
            and not opts.get("j"):
        # the plain TCP table (ss -tan): columns end to end, no tuple per row
        from ustack.diag.client import query_stacks_columns
        from ustack.diag.format import format_table_columns

        columns = query_stacks_columns(states=mask, filter_text=text, fields=fields,
                                       paths=paths)
        out.append(format_table_columns(columns, fmt))
        return _write("".join(out))
    if nothing:
        pass
    elif want_tcp and want_udp:  # one request per stack for both tables
        records, udp = query_stacks_both(states=mask, filter_text=text, detail=detail,
                                         fields=fields, paths=paths)
    elif want_tcp:
        records = query_stacks(states=mask, filter_text=text, detail=detail, fields=fields,
                               paths=paths)
    else:
        udp = query_stacks(states=mask, filter_text=text, detail=detail, fields=fields,
                           paths=paths, netid="udp")
    if udp:
        fmt = fmt._replace(netids=("tcp",) * len(records) + ("udp",) * len(udp))
        records = records + udp
    if opts.get("j"):
        from ustack.diag.format import format_json

        out.append(format_json(records, fmt))
    else:
        if fmt.processes and fmt.header:
            out.extend(ident.describe() + "\n" for ident in identities)
        out.append(format_table(records, fmt))
    return _write("".join(out))


def _select_stacks(opts: dict[str, Any]) -> tuple[list[str] | None, list[Any]]:
    """The endpoints to ask (None: all) and, for -p, each one's identity
    (pid, namespace, interface, address; ``ustack.stack_identity``)."""
    if not (opts.get("p") or opts.get("stack") or opts.get("iface")):
        return None, []
    import os

    from ustack import stack_identity
    from ustack.diag import protocol
    from ustack.diag.client import endpoint_paths

    paths: list[str] = []
    identities: list[Any] = []
    for path in endpoint_paths():
        pid = protocol.pid_of(os.path.basename(path))
        ident = stack_identity.read(path)
        if ident is None:
            ident = stack_identity.StackIdentity(pid or 0, 0, "", "?", "?")
        if opts.get("stack") and str(pid) != opts["stack"]:
            continue
        if opts.get("iface") and ident.iface != opts["iface"]:
            continue
        if pid is not None and not protocol.process_alive(pid):
            continue
        paths.append(path)
        identities.append(ident)
    return paths, identities


def _write(text: str) -> int:
    """Write the output.  A reader that went away (``| head -1``) raises
    BrokenPipeError, which the dispatcher turns into a quiet exit (141)."""
    sys.stdout.write(text)
    sys.stdout.flush()
    return 0


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ss",
        help="ss-style view of the connections of every running stack",
        add_help=False,
        usage="ustack ss [ OPTIONS ] [ FILTER ]  (ustack ss --help)",
    )
    import argparse

    parser.add_argument("argv", nargs=argparse.REMAINDER)
    parser.set_defaults(func=lambda args: run(list(args.argv)))
