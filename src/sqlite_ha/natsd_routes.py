"""Which login each route of the embedded nats-server presents while the cluster secret is rotated.

A nats-server cluster block accepts one user on incoming routes (the first secret's), so during a rotation a
peer that already requires the new secret refuses a route presenting the old one, and the other way round.
Each route therefore presents one login at a time and moves to the next when its peer refuses the one it
presents (``NatsServer`` then reloads the server's configuration). One login per route, not a URL per login:
with two URLs nats-server solicits the peer twice, and the connection whose login works could be closed as a
duplicate of the one about to be refused, after which that route stayed down (seen under load, 1 start in 5).
"""

from __future__ import annotations

import contextlib
import socket

from sqlite_ha.natsd_config import NatsServerOptions, route_host, route_logins

SWITCH_EVERY = 2.0  # seconds: a route moves to another login at most this often (refusals come in bursts)


class RouteLogins:
    def __init__(self, options: NatsServerOptions) -> None:
        self.count = len(route_logins(options))
        self.choice: dict[str, int] = {}  # route host:port -> index into the logins
        self._last: dict[str, float] = {}
        # nats-server names a peer by the address it dialled: map those back to the configured routes
        self._by_address: dict[str, str] = {}
        if self.count > 1:
            for route in options.routes:
                host = route_host(route)
                self._by_address[host] = host
                name, _, port = host.rpartition(":")
                with contextlib.suppress(OSError, ValueError):
                    for info in socket.getaddrinfo(name.strip("[]"), int(port), type=socket.SOCK_STREAM):
                        ip = str(info[4][0])
                        self._by_address[f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"] = host

    def refused(self, address: str, now: float) -> str | None:
        """The peer at ``address`` refused the login its route presents: the route, moved to the next login,
        when the configuration must change (None: one login only, an unknown peer, or just switched)."""
        route = self._by_address.get(address)
        if self.count < 2 or route is None or now - self._last.get(route, -SWITCH_EVERY) < SWITCH_EVERY:
            return None
        self._last[route] = now
        self.choice[route] = (self.choice.get(route, 0) + 1) % self.count
        return route
