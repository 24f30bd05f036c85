"""Parsers of setting values: each turns the text of a flag, variable or config-file line into a typed value,
or raises ValueError saying what a valid value looks like (``resolve`` names the setting and the source)."""

from __future__ import annotations

import re
from collections.abc import Callable

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Parse a Go-style duration (``15s``, ``1m30s``, ``24h``, ``250ms``, ``0``) into seconds.

    Go syntax because ``ha`` users already write their durations that way.
    """
    s = text.strip()
    if s in ("0", ""):
        if s == "":
            raise ValueError("empty duration")
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _DURATION_PART.match(s, pos)
        if not m:
            raise ValueError(f"{text!r} is not a duration (examples: 500ms, 15s, 1m30s, 24h)")
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return total


_SIZE = re.compile(r"^\s*(\d+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """Parse a byte size: ``1048576``, ``512KB``, ``16MiB``, ``1g`` (binary multiples)."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size (examples: 1048576, 512KB, 16MB)")
    unit = (m.group(2) or "").lower()[:1]
    return int(m.group(1)) * _SIZE_UNITS[unit]


MAX_TRANSACTION_SIZE_LIMIT = 1_000_000_000  # SQLite's longest value: a change set is one in the outbox


def parse_transaction_size(text: str) -> int:
    size = parse_size(text)
    if not 1024 * 1024 <= size <= MAX_TRANSACTION_SIZE_LIMIT:
        raise ValueError(
            f"{text!r} is not between 1MB and {MAX_TRANSACTION_SIZE_LIMIT} bytes (SQLite's longest value)"
        )
    return size


_TRUE = {"1", "t", "true", "yes", "y", "on"}
_FALSE = {"0", "f", "false", "no", "n", "off"}


def parse_bool(text: str) -> bool:
    v = text.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true or false)")


def parse_port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise ValueError(f"{port} is not a port number (0-65535)")
    return port


def parse_int_range(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            n = int(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an integer") from None
        if not lo <= n <= hi:
            raise ValueError(f"{n} is out of range ({lo}-{hi})")
        return n

    return parse


def parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(text: str) -> str:
        v = text.strip().lower()
        if v not in choices:
            raise ValueError(f"{text!r} is not one of: {', '.join(choices)}")
        return v

    return parse


def parse_str(text: str) -> str:
    return text


def parse_nats_url(text: str) -> str:
    """One NATS URL, or several separated by commas (the servers of one cluster)."""
    for url in text.split(","):
        if text and not re.match(r"^(nats|tls|ws|wss)://[^\s,]+$", url.strip()):
            raise ValueError(f"{url!r} is not a NATS URL (example: nats://127.0.0.1:4222)")
    return ",".join(u.strip() for u in text.split(",")) if text else text


_POLICY = re.compile(
    r"^(all|last|new|by_start_sequence=[1-9][0-9]*|by_start_time=\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})$"
)


def parse_policy(text: str) -> str:
    value = text.strip()
    if not _POLICY.match(value):
        raise ValueError(
            f"{text!r} is not a delivery policy (all, last, new, by_start_sequence=N, "
            "by_start_time=YYYY-MM-DD HH:MM:SS)"
        )
    return value


def parse_row_identify(text: str) -> str:
    value = text.strip().lower()
    if value in ("pk", "rowid"):
        return value
    if value == "full":
        raise ValueError(
            "'full' is not supported: rows identified by their content cannot carry a version, so concurrent "
            "writes could not converge; tables without a primary key are identified by origin node and rowid"
        )
    raise ValueError(f"{text!r} is not one of: pk, rowid")


def parse_interceptor(text: str) -> str:
    if text and not re.fullmatch(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", text):
        raise ValueError(f"{text!r} is not module:object (example: myapp.hooks:interceptor)")
    return text


def parse_routes(text: str) -> tuple[str, ...]:
    """Comma-separated ``host:port`` (or ``nats-route://host:port``) of the other servers' cluster ports."""
    routes = tuple(r.strip() for r in text.split(",") if r.strip())
    for route in routes:
        hostport = route.split("://", 1)[-1].rsplit("@", 1)[-1]
        host, sep, port = hostport.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{route!r} is not host:port (example: 10.0.0.2:6222)")
    return routes


def parse_nats_name(text: str) -> str:
    """A NATS ``server_name``: it goes into the generated server configuration, so no quotes or spaces."""
    if text and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise ValueError(f"{text!r} is not a NATS server name (letters, digits, '.', '_' and '-')")
    return text


def parse_stream_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", text):
        raise ValueError(f"{text!r} is not a valid stream name (letters, digits, _ and -)")
    return text


def parse_http_url(text: str) -> str:
    """A node's HTTP base URL (``http://10.0.0.1:8080``), as writers are named in every writer mode; a
    trailing slash is dropped so that URLs compare equal however they were written."""
    value = text.strip()
    if not value:
        return ""
    if not re.fullmatch(r"https?://[^\s/?#@]+(:\d{1,5})?/?", value):
        raise ValueError(f"{text!r} is not an http(s) base URL (example: http://10.0.0.1:8080)")
    return value.rstrip("/")


def parse_http_urls(text: str) -> tuple[str, ...]:
    """Comma-separated node URLs (``BASE_PEERS``)."""
    return tuple(parse_http_url(part) for part in text.split(",") if part.strip())


def parse_leader_provider(text: str) -> str:
    """go-ha's ``leaderProvider``: ``static:URL`` (that node writes) or ``dynamic:URL`` (elected; the URL is
    this node's own)."""
    value = text.strip()
    if not value:
        return ""
    kind, sep, url = value.partition(":")
    if not sep or kind not in ("static", "dynamic"):
        raise ValueError(f"{text!r} is not static:URL or dynamic:URL (example: dynamic:http://10.0.0.1:8080)")
    return f"{kind}:{parse_http_url(url)}"


def parse_node_id(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", text):
        raise ValueError(f"{text!r} is not a node id (letters, digits, '.', '_' and '-')")
    return text
