"""The aiohttp application: routes, authentication, and the handlers behind them."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

import orjson
from aiohttp import web

from sqlite_ha.db.authorizer import Permission
from sqlite_ha.db.database import Database
from sqlite_ha.db.dsn import parse_dsn
from sqlite_ha.db.registry import Databases
from sqlite_ha.errors import BadRequest, HAError, NotFound, NotReady, PayloadTooLarge
from sqlite_ha.replication.manager import ReplicationManager
from sqlite_ha.replication.replicated_database import ReplicationPending
from sqlite_ha.replication.snapshot import SnapshotMeta
from sqlite_ha.replication.snapshotter import Snapshotter
from sqlite_ha.security.node_auth import HEADER as NODE_AUTH
from sqlite_ha.security.users import User, Users
from sqlite_ha.served import ServedDatabase
from sqlite_ha.server.http.auth import HttpAuth, require, sql_grant
from sqlite_ha.server.http.body import body_middleware, read_piece
from sqlite_ha.server.http.docs import render_docs
from sqlite_ha.server.http.errors import MAX_BODY_SIZE, answer_error, error_middleware
from sqlite_ha.server.http.fast import HAND_OVER, Answer
from sqlite_ha.server.http.heartbeat import LIMITS as HEARTBEAT_LIMITS
from sqlite_ha.server.http.heartbeat import HeartbeatRoute
from sqlite_ha.server.http.query import encode_results, load_json, parse_body
from sqlite_ha.server.http.writes import WriteRouter

if TYPE_CHECKING:
    from sqlite_ha.config import Config
    from sqlite_ha.security.keys import ClusterKeys
    from sqlite_ha.writer.role import WriterMode

# Health, readiness and documentation stay open so orchestrators and people can reach them without the token,
# as in the ``ha`` command.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/openapi.yaml", "/docs"})
# Routes for nodes only (heartbeats): never a client's login; their handler checks the node signature
# (security/node_auth.py) instead.
SIGNED_PATHS = frozenset({"/_ha/heartbeat"})
_NO_LOGIN = PUBLIC_PATHS | SIGNED_PATHS
_CHUNK = 256 * 1024
SEQ_HEADER = "X-Sequence"  # the log position of a write's change set: a read-your-writes token on any node
MIN_SEQ_HEADER = "X-Min-Sequence"
READ_LEVEL_HEADER = "X-Read-Level"
READ_LEVELS = {"none": "none", "strong": "strong", "linearizable": "strong"}


class NodeView(Protocol):
    """What the HTTP API needs of a node."""

    name: str
    config: Config
    keys: ClusterKeys | None
    databases: Databases
    replication: ReplicationManager | None
    snapshots: Snapshotter | None
    writer: WriterMode

    def readiness(self) -> tuple[bool, dict[str, Any]]: ...

    def database(self, ident: str | None = None) -> ServedDatabase: ...

    async def status(self) -> dict[str, Any]: ...

    async def create_database(self, dsn: str) -> ServedDatabase: ...

    async def take_snapshot(self, ident: str | None = None) -> tuple[SnapshotMeta, bool]: ...

    async def latest_snapshot(self, ident: str | None = None) -> SnapshotMeta | None: ...

    async def fetch_snapshot(self, ident: str | None, dest: Path) -> SnapshotMeta: ...

    async def delete_database(self, ident: str) -> None: ...

    async def load(self, ident: str, path: str, size: int) -> dict[str, Any]: ...


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(data), status=status, content_type="application/json", headers=headers
    )


_USER = "sqlite_ha.user"
_NODE = "sqlite_ha.node"  # the node that signed a node request (GET /leader)
NODE_PATHS = frozenset({"/leader"})  # routes other nodes may ask with a node signature instead of a login


def auth_middleware(
    auth: HttpAuth, node_signer: Callable[[web.Request], str | None]
) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def check(
        request: web.Request,
        handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
    ) -> web.StreamResponse:
        if request.path in NODE_PATHS and NODE_AUTH in request.headers:
            node = node_signer(request)  # a wrong signature is a 401; None: no cluster secret to check
            if node is not None:
                request[_NODE] = node
                return await handler(request)
        if request.path not in _NO_LOGIN:
            request[_USER] = await auth.principal(request.headers.get("Authorization", ""))
        return await handler(request)

    return check


def _user(request: web.Request) -> User | None:
    user: User | None = request.get(_USER)
    return user


class HTTPApi:
    def __init__(
        self,
        node: NodeView,
        *,
        token: str = "",
        users: Users | None = None,
        max_body_size: int = 16 * 1024 * 1024,
        max_load_size: int = 64 * 1024**3,
        read_wait: float = 5.0,
        body_timeout: float = 60.0,
    ) -> None:
        self.node = node
        self.auth = HttpAuth(token, users)
        self.max_load_size = max_load_size
        self.read_wait = read_wait  # how long a read with min_seq waits for this node to catch up
        self.body_timeout = body_timeout
        # The body's limits come before the token's check: an oversized body is refused at once either way.
        middlewares: list[Any] = [
            error_middleware,
            body_middleware(max_body_size, body_timeout, small=HEARTBEAT_LIMITS),
        ]
        if self.auth.enabled:
            middlewares.append(auth_middleware(self.auth, self._node_signer))
        self.app = web.Application(middlewares=middlewares, client_max_size=max_body_size)
        self.app[MAX_BODY_SIZE] = max_body_size
        self._writes: WriteRouter | None = None  # made on start: the node is complete by then
        self.app.on_startup.append(self._start)
        self.app.on_cleanup.append(self._close)
        # In a writer mode, the routes that write replicated data go to the writer from a node that is not
        # it: the queries (when they write) and the loads. The other POST and DELETE routes act on this node
        # alone and stay here: a database created or deleted over the API is this node's (each node
        # attaches its own), a snapshot is taken of this node's copy, and a replication consumer is removed
        # from the shared log by whichever node is asked.
        r = self.app.router
        r.add_post("/", self.query)
        r.add_post("/query", self.query)
        r.add_get("/", self.download)
        r.add_get("/download", self.download)
        r.add_get("/databases", self.list_databases)
        r.add_post("/databases", self.create_database)
        r.add_post("/databases/{id}", self.query)
        r.add_get("/databases/{id}", self.download)
        r.add_delete("/databases/{id}", self.delete_database)
        r.add_post("/load", self.load)
        r.add_post("/databases/{id}/load", self.load)
        r.add_get("/snapshots", self.list_snapshots)
        r.add_post("/snapshot", self.take_snapshot)
        r.add_get("/snapshot", self.get_snapshot)
        r.add_post("/databases/{id}/snapshot", self.take_snapshot)
        r.add_get("/databases/{id}/snapshot", self.get_snapshot)
        r.add_get("/replications", self.list_replications)
        r.add_get("/replications/{name}", self.get_replication)
        r.add_delete("/replications/{name}", self.delete_replication)
        r.add_get("/healthz", self.healthz)
        r.add_get("/readyz", self.readyz)
        r.add_get("/status", self.status)
        r.add_get("/leader", self.leader)
        r.add_get("/openapi.yaml", self.openapi)
        r.add_get("/docs", self.docs)
        r.add_post("/_ha/heartbeat", HeartbeatRoute(node).handle)

    async def _start(self, app: web.Application) -> None:
        node = self.node
        self._writes = WriteRouter(name=node.name, writer=node.writer, keys=node.keys, config=node.config)
        await self._writes.start()

    async def _close(self, app: web.Application) -> None:
        if self._writes is not None:
            await self._writes.close()

    @property
    def writes(self) -> WriteRouter:
        if self._writes is None:
            self._writes = WriteRouter(
                name=self.node.name, writer=self.node.writer, keys=self.node.keys, config=self.node.config
            )
        return self._writes

    def _node_signer(self, request: web.Request) -> str | None:
        return self.writes.verifier.verify(
            request.headers.get(NODE_AUTH), request.method, request.raw_path, b""
        )

    def _database(self, request: web.Request, permission: Permission = Permission.READ) -> ServedDatabase:
        """The database a route names, if the user has ``permission`` on it."""
        db = self.node.database(request.match_info.get("id"))
        require(_user(request), permission, db.id)
        return db

    # -------------------------------------------------------------------------------- queries
    async def query(self, request: web.Request) -> web.StreamResponse:
        """Run statements; ``?min_seq=N`` first waits until this node has applied the log up to N, and
        ``?level=strong`` until it has applied everything the log held when the request arrived."""
        body = await request.read()
        if request.query_string:
            self.writes.check_flags(request)
        database, user = request.match_info.get("id"), _user(request)
        answer = await self.run_query(database, body, _min_seq(request), user, _read_level(request), request)
        if not isinstance(answer, tuple):
            return answer  # the writer's answer, or a 307 to it
        status, body, headers = answer
        return web.Response(status=status, body=body, content_type="application/json", headers=headers)

    async def run_query(
        self,
        database: str | None,
        body: bytes,
        min_seq: int,
        user: User | None,
        level: str = "none",
        request: web.Request | None = None,
    ) -> Answer | web.StreamResponse:
        """The answer to a query; a write on a node that is not the writer goes to the writer (from the
        fast path, without ``request``: ``HAND_OVER``, so aiohttp serves it with the request whole)."""
        db = self.node.database(database)
        statements, as_list = parse_body(body, sql_grant(user, db.id))
        # Freshness first: a read of a table created by the write it waits for classifies only after it.
        if level == "strong":
            await db.wait_current(self.read_wait)
        if min_seq:
            await db.wait_applied(min_seq, self.read_wait)
        # A batch with one write goes whole; a statement SQLite cannot classify (an unknown table) too: the
        # writer answers it. On a writer and a leaderless node this costs one check.
        if not self.node.writer.is_writer() and not db.is_read_only(statements):
            if request is None:
                return HAND_OVER
            if not self.writes.local(request):
                forwarded = await self.writes.to_writer(request, body)
                if forwarded is not None:
                    return forwarded
        try:
            execution, seq = await db.execute(statements)
        except ReplicationPending as pending:
            replication = {"status": "pending", **pending.to_dict()}
            body = encode_results(pending.execution.results, as_list, None, replication=replication)
            return 202, body, None
        headers = {SEQ_HEADER: str(seq)} if seq is not None else None
        return 200, encode_results(execution.results, as_list, seq), headers

    async def fast_query(self, database: str | None, body: bytes, authorization: str) -> Answer:
        """A query served by the fast path (``fast``): checked and answered as the middlewares would."""
        try:
            user = await self.auth.principal(authorization) if self.auth.enabled else None
            answer = await self.run_query(database, body, 0, user)
            assert isinstance(answer, tuple)  # without a request: never a response
            return answer
        except Exception as err:
            path = "/query" if database is None else f"/databases/{database}"
            return answer_error(err, "POST", path)

    # -------------------------------------------------------------------------------- backups
    async def download(self, request: web.Request) -> web.StreamResponse:
        """Stream a consistent copy of the database, made with the backup API on a worker thread."""
        db = self._database(request)
        fd, tmp = tempfile.mkstemp(prefix=f"sqlite-ha-{db.id}-", suffix=".backup")
        os.close(fd)
        try:
            if db.spec.memory:
                db.db.backup_to(tmp)  # serialize must run on the thread that owns the connection
            else:
                await asyncio.to_thread(db.db.backup_to, tmp)
            f = await asyncio.to_thread(open, tmp, "rb")
        finally:
            os.unlink(tmp)  # the open handle keeps the data until it is closed
        stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime())
        return await _stream_file(request, f, f"{stamp}_{db.id}")

    async def _upload(self, request: web.Request) -> AsyncIterator[bytes]:
        """An upload's body, piece by piece (each within --body-timeout), to forward it as it arrives."""
        while chunk := await read_piece(request, _CHUNK, self.body_timeout):
            yield chunk

    async def load(self, request: web.Request) -> web.StreamResponse:
        """Load an uploaded SQLite file into an empty database through the write path (every node gets it).
        It writes replicated data: on a node that is not the writer it goes to the writer, streamed."""
        db = self._database(request, Permission.ADMIN)
        if not self.node.writer.is_writer() and not self.writes.local(request):
            forwarded = await self.writes.to_writer(request, self._upload(request))
            if forwarded is not None:
                return forwarded
        limit = self.max_load_size
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"the file is larger than --max-load-size ({limit} bytes)", limit=limit)
        directory = None if db.spec.memory else (os.path.dirname(db.spec.path) or None)
        fd, tmp = tempfile.mkstemp(prefix=f".{db.id}-load-", suffix=".db", dir=directory)
        try:
            size = 0
            with os.fdopen(fd, "wb") as f:
                while chunk := await read_piece(request, _CHUNK, self.body_timeout):
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLarge(
                            f"the file is larger than --max-load-size ({limit} bytes)", limit=limit
                        )
                    await asyncio.to_thread(f.write, chunk)
            summary = await self.node.load(db.id, tmp, size)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        seq = summary.get("seq")
        return json_response(summary, headers={SEQ_HEADER: str(seq)} if seq else None)

    # -------------------------------------------------------------------------------- snapshots
    async def list_snapshots(self, request: web.Request) -> web.Response:
        """The latest snapshot of each database this node serves (null where there is none)."""
        user = _user(request)
        out = {}
        for db in self.node.databases:
            if user is not None and not user.allows(Permission.ADMIN, db.id):
                continue
            latest = await self.node.latest_snapshot(db.id)
            out[db.id] = latest.to_dict() if latest is not None else None
        return json_response({"snapshots": out})

    async def take_snapshot(self, request: web.Request) -> web.Response:
        """Snapshot the database now, unless the stored snapshot already includes everything applied here."""
        db = self._database(request, Permission.ADMIN)
        meta, taken = await self.node.take_snapshot(db.id)
        return web.Response(
            body=orjson.dumps({"snapshot": meta.to_dict(), "taken": taken}),
            content_type="application/json",
            headers={SEQ_HEADER: str(meta.seq)},
        )

    async def get_snapshot(self, request: web.Request) -> web.StreamResponse:
        """Stream the database's latest snapshot, with the log position it includes in ``X-Sequence``."""
        db = self.node.databases.get(request.match_info.get("id"))  # served from the store: even when stale
        require(_user(request), Permission.ADMIN, db.id)
        fd, tmp = tempfile.mkstemp(prefix=f"sqlite-ha-snapshot-{db.id}-", suffix=".db")
        os.close(fd)
        try:
            meta = await self.node.fetch_snapshot(db.id, Path(tmp))
            f = await asyncio.to_thread(open, tmp, "rb")
        finally:
            os.unlink(tmp)
        return await _stream_file(
            request, f, f"{meta.seq}_{db.id}", {SEQ_HEADER: str(meta.seq), "X-Snapshot-Sha256": meta.sha256}
        )

    # -------------------------------------------------------------------------------- databases
    async def list_databases(self, request: web.Request) -> web.Response:
        """The databases served here that the user has any permission on."""
        user = _user(request)
        return json_response(
            {
                "databases": [
                    self._describe(db)
                    for db in self.node.databases
                    if user is None or user.grant(db.id) != Permission.NONE
                ]
            }
        )

    def _describe(self, db: Database) -> dict[str, Any]:
        return {
            "id": db.id,
            "path": None if db.spec.memory else db.spec.path,
            "memory": db.spec.memory,
            "created_over_api": self.node.databases.created_over_api(db.id),
        }

    async def create_database(self, request: web.Request) -> web.Response:
        doc = load_json(await request.read())
        if not isinstance(doc, dict) or not isinstance(doc.get("dsn"), str) or not doc["dsn"]:
            raise BadRequest('expected {"dsn": "<file name>"}')
        require(_user(request), Permission.ADMIN, _database_id(doc["dsn"]))
        db = await self.node.create_database(doc["dsn"])
        return json_response(self._describe(db.db), status=201)

    async def delete_database(self, request: web.Request) -> web.Response:
        require(_user(request), Permission.ADMIN, request.match_info["id"])
        await self.node.delete_database(request.match_info["id"])
        return web.Response(status=204)

    # -------------------------------------------------------------------------------- replication
    def _replication(self, request: web.Request) -> ReplicationManager:
        require(_user(request), Permission.ADMIN, None)
        manager = self.node.replication
        if manager is None:
            raise NotReady("replication has not started on this node")
        return manager

    async def list_replications(self, request: web.Request) -> web.Response:
        return json_response({"replications": await self._replication(request).consumers()})

    async def get_replication(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = await self._replication(request).consumer(name)
        if found is None:
            raise NotFound(f"no replication consumer {name!r}", consumer=name)
        return json_response(found)

    async def delete_replication(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not await self._replication(request).delete_consumer(name):
            raise NotFound(f"no replication consumer {name!r}", consumer=name)
        return web.Response(status=204)

    # -------------------------------------------------------------------------------- health
    async def healthz(self, request: web.Request) -> web.Response:
        return self._health_response("/healthz")

    async def readyz(self, request: web.Request) -> web.Response:
        return self._health_response("/readyz")

    def health(self, path: str) -> Answer:
        """The answer to ``/healthz`` or ``/readyz``, also given by the listener over its connection cap."""
        if path == "/healthz":
            return 200, orjson.dumps({"status": "ok", "node": self.node.name}), None
        ready, checks = self.node.readiness()
        # Ready but with a check failing (its embedded nats-server down): it serves, but is degraded.
        body: dict[str, Any] = {"ready": ready, "checks": checks}
        if ready and not all(checks.values()):
            body["degraded"] = True
        return (200 if ready else 503), orjson.dumps(body), None

    def _health_response(self, path: str) -> web.Response:
        status, body, _ = self.health(path)
        return web.Response(status=status, body=body, content_type="application/json")

    async def status(self, request: web.Request) -> web.Response:
        require(_user(request), Permission.ADMIN, None)
        return json_response(await self.node.status())

    async def leader(self, request: web.Request) -> web.Response:
        """Who writes: asked by clients (as ``/status``) and by other nodes (with a node signature)."""
        if _NODE not in request:
            require(_user(request), Permission.ADMIN, None)
        return json_response(self.writes.leader())

    # -------------------------------------------------------------------------------- docs
    async def openapi(self, request: web.Request) -> web.Response:
        return web.Response(text=openapi_text(), content_type="application/yaml")

    async def docs(self, request: web.Request) -> web.Response:
        return web.Response(text=render_docs(openapi_text()), content_type="text/html")


async def _stream_file(
    request: web.Request, f: BinaryIO, filename: str, headers: dict[str, str] | None = None
) -> web.StreamResponse:
    """Stream an open (already unlinked) SQLite file as an attachment, then close it."""
    with f:
        size = os.fstat(f.fileno()).st_size
        resp = web.StreamResponse(
            headers={
                "Content-Type": "application/vnd.sqlite3",
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Content-Length": str(size),
                **(headers or {}),
            }
        )
        await resp.prepare(request)
        while chunk := f.read(_CHUNK):
            await resp.write(chunk)
        await resp.write_eof()
    return resp


def _read_level(request: web.Request) -> str:
    raw = request.query.get("level") or request.headers.get(READ_LEVEL_HEADER) or "none"
    level = READ_LEVELS.get(raw.strip().lower())
    if level is None:
        raise BadRequest(f"level must be none, strong or linearizable, not {raw!r}")
    return level


def _min_seq(request: web.Request) -> int:
    raw = request.query.get("min_seq") or request.headers.get(MIN_SEQ_HEADER)
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"min_seq must be a sequence number, not {raw!r}") from None
    if not 0 <= value < 2**63:
        raise BadRequest(f"min_seq must be between 0 and 2^63-1, not {value}")
    return value


def _database_id(dsn: str) -> str:
    """The id a database created from ``dsn`` would have (its file name), for the permission check; the
    node checks the name itself."""
    try:
        return parse_dsn(dsn, memory=False).id
    except HAError:
        return dsn


def openapi_text() -> str:
    return resources.files("sqlite_ha.server.http").joinpath("openapi.yaml").read_text(encoding="utf-8")
