"""Start a database from a snapshot when the log alone cannot bring it up to date.

Before a node opens a database it compares the position the file has applied with the first sequence the
log still holds. If change sets the node never saw are gone (a new node joining a cluster older than
``--replication-max-age``, or a node that was down longer than that), it installs the latest snapshot, which
must cover the gap, and consumes the log from the snapshot's position; when no stored snapshot covers the
gap, it first asks the live nodes for a fresh one (``ask``, see ``snapshot_request``).
``--from-latest-snapshot`` asks for it in any case. A snapshot is verified (checksum, SQLite integrity
check, the position recorded inside it) before it replaces anything, and it replaces the file atomically (a
rename), so a failure leaves the old file as it was.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import apsw

from sqlite_ha.changes import meta
from sqlite_ha.db.dsn import DatabaseSpec
from sqlite_ha.db.schema import USER_OBJECTS
from sqlite_ha.errors import HAError
from sqlite_ha.replication.outbound import publish_changeset
from sqlite_ha.replication.replicator import Replicator
from sqlite_ha.replication.seal import PLAIN, Sealer
from sqlite_ha.replication.snapshot import SnapshotMeta, SnapshotStore
from sqlite_ha.replication.snapshot_request import SnapshotReply

# Put a verified snapshot file (first argument) in the place of a database file (second): ``install`` by a
# rename, or ``install_in_place`` through SQLite for a file other processes may be reading.
Install = Callable[[Path, str], None]

# Ask the live nodes for a snapshot of a database covering the log up to a position: the first good reply,
# else a refusal saying why, else None (nobody answered).
AskSnapshot = Callable[[str, int], Awaitable[SnapshotReply | None]]

log = logging.getLogger(__name__)


class BootstrapError(HAError):
    """The database cannot be brought up to date: serving it would serve stale data silently."""

    code = "bootstrap_error"


@dataclass(frozen=True, slots=True)
class Bootstrap:
    spec: DatabaseSpec  # what to open: the same, or for an in-memory database the snapshot to load
    installed: SnapshotMeta | None  # the snapshot installed, if one was


def applied_position(path: str) -> tuple[int, int]:
    """The log position a database file has applied and how many of its own change sets still wait in
    its outbox ((0, 0) for a missing or never replicated file)."""
    if not os.path.exists(path):
        return 0, 0
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_schema WHERE name = '_ha_state'").fetchall():
            return 0, 0
        outbox = int(conn.execute("SELECT count(*) FROM _ha_outbox").fetchall()[0][0] or 0)
        return int(meta.get(conn, meta.APPLIED_SEQ, 0) or 0), outbox
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class FileState:
    """What a database file holds before a read replica starts on it (see ``sync.options.check_start``)."""

    position: int  # the log position it has applied (0: never replicated into)
    user_tables: int  # tables other than the replication's own and SQLite's


def file_state(path: str) -> FileState:
    """The position a file has applied and how many user tables it holds (0, 0 for a missing file)."""
    try:
        conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    except apsw.CantOpenError:
        return FileState(0, 0)
    try:
        has_meta = conn.execute("SELECT 1 FROM sqlite_schema WHERE name = '_ha_state'").fetchall()
        position = int(meta.get(conn, meta.APPLIED_SEQ, 0) or 0) if has_meta else 0
        tables = conn.execute(
            f"SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND {USER_OBJECTS}"
        ).fetchall()
        return FileState(position, int(tables[0][0] or 0))
    except apsw.Error as e:
        raise BootstrapError(f"{path} is not a usable SQLite database: {e}") from e
    finally:
        conn.close()


def record_position(path: str, seq: int) -> None:
    """Record in a file the position up to which it holds the database (the user says so)."""
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        meta.create(conn)
        with conn:
            meta.put_position(conn, seq, 0)
    finally:
        conn.close()


async def bootstrap(
    spec: DatabaseSpec,
    replicator: Replicator,
    store: SnapshotStore,
    *,
    force: bool = False,
    ask: AskSnapshot | None = None,
    outbox_in_log: int = 0,
    publish_timeout: float | None = None,
    sealer: Sealer = PLAIN,
    install: Install | None = None,
) -> Bootstrap:
    """``outbox_in_log``: how many change sets of the file's outbox are known to be in the log (re-published
    just before): the snapshot may replace those, as they reach the database again from the log or are in
    the snapshot already. With ``publish_timeout``, a file with a gap publishes its outbox itself first (a
    node that stopped with writes the log never took, and stayed away longer than the log keeps change
    sets, could otherwise never start again)."""
    applied, outbox = (0, 0) if spec.memory else await asyncio.to_thread(applied_position, spec.path)
    first = await replicator.first_seq(spec.id)
    gap = first > applied + 1
    if not gap and not force:
        return Bootstrap(spec, None)
    latest = await store.latest(spec.id)
    why = (
        f"the log starts at {first} and this database has applied up to {applied}"
        if gap
        else "--from-latest-snapshot"
    )
    asked = ""
    if gap and ask is not None and (latest is None or latest.covers + 1 < first):
        latest, asked = await ask_live_nodes(spec.id, first, latest, ask, store)
    if latest is None:
        if not gap:
            log.info("database %s: no snapshot to start from; the log has everything", spec.id)
            return Bootstrap(spec, None)
        raise BootstrapError(
            f"database {spec.id}: {why}, and there is no snapshot to start from{asked}",
            hint="start a node that has the data (it answers), or take a snapshot on one (POST /snapshot)",
        )
    if latest.covers + 1 < first:
        raise BootstrapError(
            f"database {spec.id}: {why}, and the latest snapshot (seq {latest.seq}) is older than that "
            f"too{asked}",
            hint="start a node that is up to date (it answers), or take a snapshot on one (POST /snapshot)",
        )
    if not gap and latest.seq <= applied:
        return Bootstrap(spec, None)  # the file is already as new as the snapshot
    if gap and outbox > outbox_in_log and publish_timeout is not None:
        outbox_in_log = await publish_file_outbox(spec, replicator, publish_timeout, sealer)
    if outbox > outbox_in_log:
        raise BootstrapError(
            f"database {spec.id}: {why}, but it holds {outbox} change set(s) of its own not yet in the log; "
            "installing the snapshot would lose them",
            hint="start the node without --from-latest-snapshot first, so that they are published",
        )
    directory = Path(spec.path).parent if not spec.memory else Path(tempfile.gettempdir())
    fd, tmp_name = tempfile.mkstemp(prefix=f".{spec.id}-snapshot-", suffix=".db", dir=directory)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        got = await store.fetch(spec.id, tmp)
        checked = bool(getattr(store, "verifies_checksum", False))
        await asyncio.to_thread(verify, tmp, got, checksum=not checked)
        if spec.memory:
            installed = replace(spec, path=str(tmp))  # loaded into memory by Database; deleted by the node
        else:
            await asyncio.to_thread(install or _install, tmp, spec.path)
            installed = spec
    except BaseException:
        await asyncio.to_thread(_remove, tmp)
        raise
    log.info(
        "database %s: installed the snapshot at seq %d (%s); the log follows from there",
        spec.id,
        got.seq,
        why,
    )
    return Bootstrap(installed, got)


async def ask_live_nodes(
    database: str, first: int, latest: SnapshotMeta | None, ask: AskSnapshot, store: SnapshotStore
) -> tuple[SnapshotMeta | None, str]:
    """Ask the live nodes for a snapshot covering the log up to ``first - 1``. Returns the store's latest
    snapshot afterwards and, when none came, why (as a clause for an error message)."""
    log.warning(
        "database %s: the log starts at %d and no stored snapshot covers what lies before; asking the live "
        "nodes for a fresh one",
        database,
        first,
    )
    started = time.monotonic()
    reply = await ask(database, first - 1)
    if reply is None or not reply.ok:
        # a node may have finished storing one after the asker stopped waiting: look once more
        latest = await store.latest(database)
        if latest is not None and latest.covers + 1 >= first:
            return latest, ""
        if reply is None:
            return latest, " (and no live node answered a request for a fresh one)"
        return latest, f" (asked for a fresh one, {reply.node} refused: {reply.error})"
    log.info(
        "database %s: %s %s the snapshot at seq %d (covers %d) in %.2fs",
        database,
        reply.node,
        "took" if reply.taken else "pointed at",
        reply.seq,
        reply.covers,
        time.monotonic() - started,
    )
    return await store.latest(database), ""


async def publish_file_outbox(
    spec: DatabaseSpec, replicator: Replicator, timeout: float, sealer: Sealer = PLAIN
) -> int:
    """Publish again every change set in the outbox of a database file that is not open: the log
    deduplicates one it has, stores one it never had (or dropped) anew; applying one again is harmless
    (last-writer-wins). Returns how many; ``ReplicationError`` when the log does not take one."""
    rows = await asyncio.to_thread(_read_outbox, spec.path)
    for hlc, msg_id, payload in rows:
        await publish_changeset(
            replicator,
            database=spec.id,
            hlc=hlc,
            msg_id=msg_id,
            payload=payload,
            timeout=timeout,
            sealer=sealer,
        )
    if rows:
        log.info(
            "database %s: published the %d change set(s) of its own still in its outbox", spec.id, len(rows)
        )
    return len(rows)


def _read_outbox(path: str) -> list[tuple[int, str, bytes]]:
    conn = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READONLY)
    try:
        rows = conn.execute("SELECT hlc, msg_id, payload FROM _ha_outbox ORDER BY hlc").fetchall()
    finally:
        conn.close()
    return [(int(r[0]), str(r[1]), bytes(r[2])) for r in rows]  # type: ignore[arg-type]


def verify(path: Path, expected: SnapshotMeta, *, checksum: bool = True) -> None:
    """Refuse a snapshot whose bytes, structure or recorded position are not what its metadata says.
    ``checksum=False`` when the store already compared the bytes with the metadata while downloading."""
    if checksum:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1024 * 1024):
                digest.update(chunk)
        if digest.hexdigest() != expected.sha256:
            raise BootstrapError(f"snapshot of {expected.database} is corrupt: checksum mismatch")
    try:
        conn = apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READWRITE)
        try:
            # quick_check: the structure of every page and row; the full integrity_check (indexes against
            # tables too) ran where the snapshot was taken, on these very bytes (the checksum says so)
            check = conn.execute("PRAGMA quick_check").fetchall()
            position = int(meta.get(conn, meta.APPLIED_SEQ, 0) or 0)
        finally:
            conn.close()
    except apsw.Error as e:
        raise BootstrapError(f"snapshot of {expected.database} is not a usable database: {e}") from e
    if check != [("ok",)]:
        raise BootstrapError(f"snapshot of {expected.database} fails SQLite's integrity check: {check[0][0]}")
    if position != expected.seq:
        raise BootstrapError(
            f"snapshot of {expected.database} records seq {position}, its metadata {expected.seq}"
        )


def _install(tmp: Path, path: str) -> None:
    """Durably: the file's bytes reach the disk before the rename, and the rename before the node goes on
    (it will consume the log from the snapshot's position, so a torn file after a power cut would be
    silently wrong)."""
    with tmp.open("rb+") as f:
        os.fsync(f.fileno())
    for side in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path + side)
    os.replace(tmp, path)
    directory = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def install_in_place(tmp: Path, path: str) -> None:
    """Copy the snapshot into the database file through SQLite's backup API, as one write transaction, then
    remove the snapshot file. For a file that other processes may have open (a read replica's): a reader
    sees the old content or the new, never a mix, and keeps working. A rename would leave such a reader on
    the old, unlinked file for good; and when the last old connection closed, SQLite would checkpoint and
    delete the WAL by its name, which is then the new file's ("How To Corrupt An SQLite Database File",
    section 2.4). The file stays in WAL mode."""
    try:
        source = apsw.Connection(str(tmp), flags=apsw.SQLITE_OPEN_READONLY)
        try:
            target = apsw.Connection(path, flags=apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE)
            try:
                target.set_busy_timeout(30_000)
                with target.backup("main", source, "main") as copy:
                    copy.step(-1)
                target.execute("PRAGMA journal_mode=WAL")
            finally:
                target.close()
        finally:
            source.close()
    except apsw.ReadOnlyError as e:
        raise BootstrapError(
            f"cannot copy the snapshot into {path}: its page size differs from the snapshot's and a file in "
            "WAL mode cannot change it",
            hint="replicate into a new file",
        ) from e
    except apsw.Error as e:
        raise BootstrapError(f"cannot copy the snapshot into {path}: {e}") from e
    _remove(tmp)


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
