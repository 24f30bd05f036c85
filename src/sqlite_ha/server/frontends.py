"""The node's client-facing listeners: the HTTP API (fast path in front of aiohttp) and the PostgreSQL port.

They start last and stop first: a node answers no client before its databases and its log are ready, and a
stopping node finishes the requests it is serving before anything they need goes away. TLS contexts are
loaded when the object is built, so a bad certificate stops the node before it opens anything.
"""

from __future__ import annotations

import asyncio
import errno
import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sqlite_ha.config import Config
from sqlite_ha.errors import ConfigError
from sqlite_ha.security.tls import server_context
from sqlite_ha.security.users import Users
from sqlite_ha.server.descriptors import ensure_descriptors, needed
from sqlite_ha.server.http.app import HTTPApi
from sqlite_ha.server.http.fast import FastPath
from sqlite_ha.server.http.fast import Limits as HttpLimits

if TYPE_CHECKING:
    from sqlite_ha.node import Node
    from sqlite_ha.server.pgwire.server import PgServer

log = logging.getLogger(__name__)

SHUTDOWN_TIMEOUT = 5.0  # requests being served when the node stops get this long to finish
DEFAULT_PG_PASS = "ha"
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


class Frontends:
    def __init__(self, config: Config, users: Users | None) -> None:
        self.config = config
        self.users = users
        self.http_tls = (
            server_context(
                config.cert, config.key, flag="--cert", client_ca=config.client_ca, alpn=("http/1.1",)
            )
            if config.cert
            else None
        )
        self.pg_tls = (
            server_context(config.pg_cert, config.pg_key, flag="--pg-cert") if config.pg_cert else None
        )
        self.http_port: int | None = None
        self.pg: PgServer | None = None
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._fast: FastPath | None = None
        self._api: HTTPApi | None = None

    async def start(self, node: Node) -> None:
        cfg = self.config
        caps = (cfg.max_connections, *((cfg.pg_max_connections,) if cfg.pg_port else ()))
        ensure_descriptors(needed(*caps))
        if cfg.pg_port:
            await self._start_pg(node)  # before HTTP: once /readyz answers, every port does
        await self._start_http(node)

    async def _start_http(self, node: Node) -> None:
        cfg = self.config
        api = self._api = HTTPApi(
            node,
            token=cfg.token,
            users=self.users,
            max_body_size=cfg.max_body_size,
            max_load_size=cfg.max_load_size,
            read_wait=cfg.replication_timeout,
            body_timeout=cfg.body_timeout,
        )
        self._runner = web.AppRunner(
            api.app,
            access_log=log if cfg.log_level == "debug" else None,
            handle_signals=False,
            shutdown_timeout=SHUTDOWN_TIMEOUT,
            # aiohttp closes a connection that has not sent a whole request head this long after its last
            # answer: for the connections it serves, that is both the header timeout and the idle bound.
            keepalive_timeout=cfg.header_timeout,
            # After answering a request whose body it did not read (413, 408), aiohttp reads on for this long
            # before it closes, so that the client sees the answer rather than a reset.
            lingering_time=min(10.0, cfg.body_timeout),
        )
        await self._runner.setup()
        server = self._runner.server
        assert server is not None
        # Connections start on the fast path for plain queries; aiohttp takes over for anything else.
        self._fast = FastPath(
            api.fast_query,
            server,
            max_body=cfg.max_body_size,
            access_log=log if cfg.log_level == "debug" else None,
            limits=HttpLimits(
                max_connections=cfg.max_connections,
                header_timeout=cfg.header_timeout,
                body_timeout=cfg.body_timeout,
            ),
            handed_over=lambda: len(server.connections),
            health=api.health,
        )
        tls = self.http_tls  # the fast path and aiohttp both read and write through the TLS transport
        try:
            self._listener = await asyncio.get_running_loop().create_server(
                self._fast,
                cfg.host,
                cfg.port,
                reuse_address=True,
                ssl=tls,
                # a client that opens a connection and stalls the handshake is dropped as a slow header is
                ssl_handshake_timeout=(cfg.header_timeout or None) if tls is not None else None,
            )
        except OSError as e:
            await self._runner.cleanup()
            why = "address already in use" if e.errno == errno.EADDRINUSE else (e.strerror or str(e))
            raise ConfigError("--port", f"cannot listen on {cfg.host}:{cfg.port}: {why}") from e
        sockets = self._listener.sockets
        self.http_port = sockets[0].getsockname()[1] if sockets else cfg.port
        if cfg.host not in _LOOPBACK and not cfg.token and self.users is None:
            log.warning(
                "the HTTP API listens on %s without --token: anyone who can reach it can write", cfg.host
            )
        if cfg.host not in _LOOPBACK and self.http_tls is None:
            log.warning(
                "the HTTP API listens on %s without TLS: tokens and data cross the network in clear "
                "(--cert/--key, or TLS in a proxy in front of the node)",
                cfg.host,
            )

    async def _start_pg(self, node: Node) -> None:
        from sqlite_ha.server.pgwire.server import PgServer
        from sqlite_ha.server.pgwire.settings import PgSettings

        cfg = self.config
        settings = PgSettings(
            user=cfg.pg_user,
            password=cfg.pg_pass,
            auth=cfg.pg_auth,
            users=self.users,
            # With an auth file, --pg-user logs in only if its password was changed from the default.
            superuser=self.users is None or cfg.pg_pass != DEFAULT_PG_PASS,
            read_wait=cfg.replication_timeout,
            max_copy_size=cfg.pg_max_copy_size,
            tls_required=cfg.pg_tls == "require",
            allow_cleartext=cfg.pg_allow_cleartext,
            max_connections=cfg.pg_max_connections,
            startup_timeout=cfg.header_timeout,
        )
        if cfg.pg_auth == "md5":
            log.warning(
                "--pg-auth md5 is weak: a captured login is cheap to crack offline; prefer scram-sha-256 "
                "(the default)"
            )
        self.pg = PgServer(node, settings, tls=self.pg_tls)
        await self.pg.start(cfg.host, cfg.pg_port)
        if cfg.host not in _LOOPBACK and settings.superuser and cfg.pg_pass == DEFAULT_PG_PASS:
            log.warning(
                "the PostgreSQL port listens on %s with the default password: set --pg-pass", cfg.host
            )
        if cfg.host not in _LOOPBACK and self.pg_tls is None:
            log.warning(
                "the PostgreSQL port listens on %s without TLS: queries and results cross the network in "
                "clear (--pg-cert/--pg-key)",
                cfg.host,
            )

    async def stop(self) -> None:
        if self.pg is not None:
            await self.pg.stop()
            self.pg = None
        if self._listener is not None:
            self._listener.close()  # no new connections; the requests being served are answered
            if self._fast is not None:
                await self._fast.close(SHUTDOWN_TIMEOUT)
            self._listener = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def connections(self) -> dict[str, Any]:
        cfg, fast, pg = self.config, self._fast, self.pg
        return {
            "http": {
                "open": fast.open_connections() if fast is not None else 0,
                "max": cfg.max_connections,
                "refused": fast.refused if fast is not None else 0,
                "forwarding": self._api.writes.forwarder.stats() if self._api is not None else None,
            },
            "pg": None
            if pg is None
            else {
                "open": pg.open,
                "max": cfg.pg_max_connections,
                "refused": pg.refused,
                "forwarding": pg.links.stats(),
            },
        }
