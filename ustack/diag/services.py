"""TCP service names <-> port numbers, as ``ss`` resolves them.

Names are looked up with ``socket.getservbyname`` (so NSS and /etc/services
apply) and fall back to a built-in table of common services, because minimal
containers often have no /etc/services.  Port-to-name resolution for display
reads /etc/services once into a dict (``getservbyport`` rescans the file on
every call, far too slow for 50,000 rows) and, like ``ss``, leaves ports in the
kernel's ephemeral range numeric.
"""

from __future__ import annotations

import socket

# IANA names as in Debian's /etc/services (tcp entries), including common aliases
BUILTIN_SERVICES: dict[str, int] = {
    "tcpmux": 1, "echo": 7, "discard": 9, "daytime": 13, "ftp-data": 20, "ftp": 21,
    "ssh": 22, "telnet": 23, "smtp": 25, "mail": 25, "time": 37, "whois": 43,
    "nicname": 43, "tacacs": 49, "domain": 53, "gopher": 70, "finger": 79,
    "http": 80, "www": 80, "kerberos": 88, "pop3": 110, "sunrpc": 111,
    "portmapper": 111, "auth": 113, "ident": 113, "nntp": 119, "ntp": 123,
    "epmap": 135, "netbios-ssn": 139, "imap2": 143, "imap": 143, "snmp": 161,
    "bgp": 179, "irc": 194, "ldap": 389, "https": 443, "microsoft-ds": 445,
    "submissions": 465, "ssmtp": 465, "smtps": 465, "login": 513, "shell": 514,
    "printer": 515, "submission": 587, "ldaps": 636, "rsync": 873, "ftps": 990,
    "imaps": 993, "pop3s": 995, "socks": 1080, "openvpn": 1194, "ms-sql-s": 1433,
    "mqtt": 1883, "nfs": 2049, "mysql": 3306, "postgresql": 5432, "postgres": 5432,
    "x11": 6000, "http-alt": 8080, "webcache": 8080, "amqp": 5672, "xmpp-client": 5222,
    "sip": 5060, "redis": 6379, "iperf3": 5201,
}

_by_port: dict[int, str] | None = None
_ephemeral: tuple[int, int] | None = None


def port_from_name(name: str) -> int | None:
    """Port number for a TCP service name, or None if unknown."""
    try:
        return socket.getservbyname(name, "tcp")
    except OSError:
        return BUILTIN_SERVICES.get(name.lower())


def _load_by_port() -> dict[int, str]:
    table: dict[int, str] = {}
    for name, port in BUILTIN_SERVICES.items():
        table.setdefault(port, name)
    try:
        with open("/etc/services", encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return table
    from_file: dict[int, str] = {}
    for line in lines:
        words = line.split("#", 1)[0].split()
        if len(words) < 2 or not words[1].endswith("/tcp"):
            continue
        try:
            port = int(words[1][:-4])
        except ValueError:
            continue
        from_file.setdefault(port, words[0])
    table.update(from_file)
    return table


def _ephemeral_range() -> tuple[int, int]:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = f.read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def service_table() -> dict[int, str]:
    """port -> service name for display; ephemeral ports are left out, as ss does."""
    global _by_port, _ephemeral
    if _by_port is None:
        table = _load_by_port()
        low, high = _ephemeral = _ephemeral_range()
        _by_port = {p: n for p, n in table.items() if not low <= p <= high}
    return _by_port
