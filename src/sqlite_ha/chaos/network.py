"""A private network for a cluster, so that a nemesis can partition it: one Linux network namespace per node.

Each namespace gets a veth into one bridge in the host's namespace; node ``i`` has ``10.<net>.0.<i+1>``, the
host (where the clients run) ``10.<net>.0.254``. A partition adds blackhole routes between two groups of
namespaces: their packets to each other vanish, while the clients still reach every node. Needs root and
iproute2 (``ip netns``); nothing else (no iptables).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess


def supported() -> bool:
    """Root and ``ip`` are there (the namespaces themselves are checked by ``Network.create``)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


def _ip(*args: str, ns: str | None = None, check: bool = True) -> None:
    cmd = ["ip", *(["netns", "exec", ns, "ip"] if ns else []), *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    if check and result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {result.stderr.strip()}")


class Network:
    """``size`` namespaces on one bridge. ``close`` removes everything it made."""

    def __init__(self, size: int) -> None:
        tag = secrets.token_hex(2)
        self.net = 100 + int(tag, 16) % 100
        self.bridge = f"chaosbr{tag}"
        self.names = [f"chaos{tag}n{i + 1}" for i in range(size)]
        self.hosts = [f"10.{self.net}.0.{i + 1}" for i in range(size)]
        self._blackholes: list[tuple[str, str]] = []

    def create(self) -> None:
        try:
            _ip("link", "add", self.bridge, "type", "bridge")
            _ip("addr", "add", f"10.{self.net}.0.254/24", "dev", self.bridge)
            _ip("link", "set", self.bridge, "up")
            for i, ns in enumerate(self.names):
                veth = f"{self.bridge}v{i + 1}"
                _ip("netns", "add", ns)
                _ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
                _ip("link", "set", veth, "master", self.bridge, "up")
                _ip("addr", "add", f"{self.hosts[i]}/24", "dev", "eth0", ns=ns)
                _ip("link", "set", "eth0", "up", ns=ns)
                _ip("link", "set", "lo", "up", ns=ns)
        except Exception:
            self.close()
            raise

    def prefix(self, i: int) -> list[str]:
        """The command prefix that runs a process in node ``i``'s namespace."""
        return ["ip", "netns", "exec", self.names[i]]

    def partition(self, side: list[int], other: list[int]) -> None:
        """Nodes of ``side`` and of ``other`` can no longer reach each other (both directions)."""
        for a in side:
            for b in other:
                for ns, dest in ((self.names[a], self.hosts[b]), (self.names[b], self.hosts[a])):
                    _ip("route", "add", "blackhole", f"{dest}/32", ns=ns)
                    self._blackholes.append((ns, dest))

    def heal(self) -> None:
        for ns, dest in self._blackholes:
            _ip("route", "del", "blackhole", f"{dest}/32", ns=ns, check=False)
        self._blackholes.clear()

    def close(self) -> None:
        self.heal()
        for ns in self.names:
            _ip("netns", "del", ns, check=False)  # removes its end of the veth, and so the pair
        _ip("link", "del", self.bridge, check=False)
