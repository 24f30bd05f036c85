"""Transaction modes: ``SET TRANSACTION``, ``SET SESSION CHARACTERISTICS AS TRANSACTION`` and the modes of
``BEGIN`` / ``START TRANSACTION`` (isolation level, READ ONLY / READ WRITE, [NOT] DEFERRABLE).

What each level gives here, so that no level is a name only:

* READ UNCOMMITTED and READ COMMITTED (PostgreSQL treats the first as the second): each statement sees the
  latest commit; the block's first write takes the database's writer.
* REPEATABLE READ and SERIALIZABLE: the block's reads run in one read transaction on a reader connection
  of its own (a ``ReadView``), so every read, ``COPY … TO STDOUT`` included, sees the snapshot of the
  block's first statement: pg_dump's ``SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY`` gets
  a consistent dump while writes go on. Such a block may write only before its first read (then the
  writer's own transaction is the snapshot, and there is one writer, which is serializable); a write after
  reads could act on a snapshot older than the writer's data, so it is refused (0A000) rather than run as
  READ COMMITTED under the name REPEATABLE READ.
* READ ONLY: a write in the block is refused with 25006, as PostgreSQL does.

``LOCK TABLE`` keeps others from changing the tables until the block ends. ``ACCESS SHARE`` (pg_dump's) and
``ROW SHARE`` only keep out schema changes, which a snapshot block cannot see anyway: there they are granted
as they are. Any other lock, or any lock in a READ COMMITTED block, takes the database's writer for the rest
of the block (as the block's first write would), which holds back every change on this node and the log's
changes from other nodes, so it is never weaker than the mode asked for. A READ ONLY block may take the
modes up to ROW EXCLUSIVE, as in PostgreSQL (25006 beyond).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from sqlite_ha.server.pgwire.errors import PgError

if TYPE_CHECKING:
    from sqlite_ha.server.pgwire.state import SessionState as Session

LEVELS = ("read uncommitted", "read committed", "repeatable read", "serializable")
_SET_TRANSACTION = re.compile(
    r"^\s*set\s+(?:(session\s+characteristics\s+as\s+)|(?:local\s+)?)transaction\s+(?!snapshot\b)(.*?)\s*;?\s*$",
    re.I | re.S,
)
_LOCK = re.compile(
    r"^\s*lock\s+(?:table\s+)?(?:only\s+)?(?P<tables>.+?)(?:\s+in\s+(?P<mode>[a-z ]+?)\s+mode)?"
    r"(?:\s+nowait)?\s*;?\s*$",
    re.I | re.S,
)
_BEGIN = re.compile(r"^\s*(?:begin|start)(?:\s+(?:work|transaction))?\s*(.*?)\s*;?\s*$", re.I | re.S)
_MODE = re.compile(
    r"isolation\s+level\s+(read\s+uncommitted|read\s+committed|repeatable\s+read|serializable)"
    r"|read\s+(only|write)|(not\s+)?deferrable",
    re.I,
)


@dataclass(frozen=True, slots=True)
class Mode:
    """A transaction's isolation level and access mode."""

    level: str = "read committed"
    read_only: bool = False
    snapshot: bool = field(init=False)  # the block reads one snapshot (REPEATABLE READ, SERIALIZABLE)

    def __post_init__(self) -> None:  # a field, not a property: the inline read path checks it
        object.__setattr__(self, "snapshot", self.level in ("repeatable read", "serializable"))


def parse_modes(text: str, base: Mode) -> Mode:
    """The modes listed in ``text`` (comma- or space-separated) applied over ``base``; 42601 otherwise."""
    mode = base
    rest = text
    for found in _MODE.finditer(text):
        if found.group(1):
            mode = replace(mode, level=" ".join(found.group(1).lower().split()))
        elif found.group(2):
            mode = replace(mode, read_only=found.group(2).lower() == "only")
        rest = rest.replace(found.group(0), "", 1)
    if rest.replace(",", "").strip():
        raise PgError("42601", f"syntax error in transaction modes: {text.strip()!r}")
    return mode


def is_set_transaction(sql: str) -> bool:
    return _SET_TRANSACTION.match(sql) is not None


def set_transaction(session: Session, sql: str) -> None:
    """``SET TRANSACTION …`` (this block) or ``SET SESSION CHARACTERISTICS AS TRANSACTION …`` (later ones)."""
    found = _SET_TRANSACTION.match(sql)
    if found is None:
        raise PgError("42601", f"cannot read {sql!r}")
    mode = parse_modes(found.group(2), session.mode)  # a syntax error comes first, as in PostgreSQL
    if found.group(1):
        session.default_mode = parse_modes(found.group(2), session.default_mode)
        if not session.in_block:
            session.mode = session.default_mode
        return
    if not session.in_block:
        session.notice("SET TRANSACTION can only be used in transaction blocks", "25P01")
        return
    started = session.tx is not None or session.read_view is not None or session.block_read
    if started and mode.level != session.mode.level:
        raise PgError("25001", "SET TRANSACTION ISOLATION LEVEL must be called before any query")
    session.mode = mode


def began(session: Session, sql: str) -> None:
    """A block starts: with the session's default modes, and the ones its BEGIN lists."""
    found = _BEGIN.match(sql)
    session.mode = parse_modes(found.group(1) if found else "", session.default_mode)
    session.block_read = False


def ended(session: Session) -> None:
    """The block ended: its snapshot goes."""
    view, session.read_view = session.read_view, None
    if view is not None:
        view.close()
    session.mode = session.default_mode
    session.block_read = False


def refuse_write(session: Session, verb: str) -> None:
    """Raise the error PostgreSQL gives a write in this block, if any."""
    if session.mode.read_only:
        raise PgError("25006", f"cannot execute {verb} in a read-only transaction")
    if session.mode.snapshot and session.block_read and session.tx is None:
        raise PgError(
            "0A000",
            f"a {session.mode.level.upper()} block cannot write after it read: its snapshot may be older "
            "than the writer's data",
            hint="start the block with its first write, or use READ COMMITTED",
        )


async def lock_table(session: Session, sql: str) -> None:
    """``LOCK [TABLE] [ONLY] t, … [IN mode MODE] [NOWAIT]`` inside a block."""
    found = _LOCK.match(sql)
    if found is None:
        raise PgError("42601", f"cannot read {sql!r}")
    if not session.in_block:
        raise PgError("25P01", "LOCK TABLE can only be used in transaction blocks")
    db = session.db
    if db is None:
        raise PgError("3D000", "no database")
    for name in found.group("tables").split(","):
        table = name.strip().removeprefix("public.").strip('"')
        if not db.db.table_types(table):
            raise PgError("42P01", f'relation "{name.strip()}" does not exist')
    mode = " ".join((found.group("mode") or "access exclusive").lower().split())
    if mode in ("access share", "row share") and session.mode.snapshot:
        return
    if session.mode.read_only and mode not in ("access share", "row share", "row exclusive"):
        raise PgError("25006", "cannot execute LOCK TABLE in a read-only transaction")
    if session.tx is None:
        if session.mode.snapshot and session.block_read:
            refuse_write(session, "LOCK TABLE")  # the writer's data may be newer than the snapshot read
        tx = await db.begin()
        for savepoint in session.block.took_writer(tx):
            tx.savepoint(savepoint)
