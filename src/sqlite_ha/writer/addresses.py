"""Is a URL this node's own? Writer modes name nodes by URL, the same flags on every node: each node must
recognise itself among them."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from urllib.parse import urlsplit


def url_port(url: str) -> int:
    parts = urlsplit(url)
    return parts.port or (443 if parts.scheme == "https" else 80)


def is_own_url(url: str, http_port: int, *, also: tuple[str, ...] = ()) -> bool:
    """Whether ``url`` reaches this node: one of the node's own URLs given in ``also`` (--leader-addr,
    --local-target), or its HTTP port on a host name that resolves to an address of this machine."""
    if not url:
        return False
    if url.rstrip("/") in {u.rstrip("/") for u in also if u}:
        return True
    if url_port(url) != http_port:
        return False
    host = urlsplit(url).hostname or ""
    return any(_is_local(address) for address in _addresses(host))


def _addresses(host: str) -> set[str]:
    with contextlib.suppress(ValueError):
        return {str(ipaddress.ip_address(host))}
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)}
    except OSError:
        return set()


def _is_local(address: str) -> bool:
    """An address of this machine: loopback, or one a socket can bind (others fail: EADDRNOTAVAIL)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if ip.is_loopback:
        return True
    family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.bind((address, 0))
        return True
    except OSError:
        return False
