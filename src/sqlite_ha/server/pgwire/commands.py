"""Session commands: the statements that ``dialect.classify`` does not call a query, which the session
answers itself instead of handing them to SQLite (BEGIN, COMMIT and ROLLBACK, savepoints, SET and SHOW,
DISCARD, DEALLOCATE, COPY, and no-ops drivers send such as LISTEN or CLOSE).

They act on the session's own state (its transaction block, settings, prepared statements), not on the
message flow, so they sit apart from the loop in ``session.py``. The block's state changes only through
``transaction.TransactionBlock``: savepoints made before the block's first write wait there until that write
takes the writer (``Session._run_query``); COMMIT is acknowledged once the change set is in the log, and its
stream sequence goes to the client as ``ha.seq``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlite_ha.errors import HAError
from sqlite_ha.replication.replicated_database import ReplicationPending
from sqlite_ha.server.pgwire import cursors, isolation
from sqlite_ha.server.pgwire.copy.operation import Copy, CopyError
from sqlite_ha.server.pgwire.errors import PgError
from sqlite_ha.server.pgwire.handshake import SERVER_VERSION, check_connect, databases_hint, find_database
from sqlite_ha.server.pgwire.prepared import Outcome, Prepared
from sqlite_ha.server.pgwire.sqlstate import sqlstate
from sqlite_ha.server.pgwire.transaction import BlockError
from sqlite_ha.server.pgwire.types import values as t
from sqlite_ha.server.pgwire.wire import codec

if TYPE_CHECKING:
    from sqlite_ha.server.pgwire.state import SessionState

_SET = re.compile(r"^\s*set\s+(?:(session|local)\s+)?(.+?)\s*(?:=|\bto\b)\s*(.+?)\s*;?\s*$", re.I | re.S)
_SET_NAMES = re.compile(r"^\s*set\s+(?:session\s+)?(names|time\s+zone)\s+(.+?)\s*;?\s*$", re.I | re.S)
_SHOW = re.compile(r"^\s*show\s+(.+?)\s*;?\s*$", re.I | re.S)
_SAVEPOINT = re.compile(
    r"^\s*(?:savepoint|release(?:\s+savepoint)?|rollback\s+(?:work\s+|transaction\s+)?to(?:\s+savepoint)?)\s+(\"?)(.+?)\1\s*;?\s*$",
    re.I | re.S,
)
_EXTENSION = re.compile(
    r'\s*(?:CREATE|DROP)\s+EXTENSION\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?(?:"([^"]+)"|([\w-]+))', re.I
)
_BUILT_IN_EXTENSIONS = {"pgcrypto", "uuid-ossp", "plpgsql"}
_AS_ENUM = re.compile(r"\bAS\s+ENUM\s*\(", re.I)
_ADD_VALUE = re.compile(r"\bADD\s+VALUE\b", re.I)
_DEALLOCATE = re.compile(r"^\s*deallocate\s+(?:prepare\s+)?(.+?)\s*;?\s*$", re.I | re.S)


async def run(session: SessionState, prepared: Prepared) -> Outcome:
    kind, sql = prepared.kind, prepared.sql
    if kind == "begin":
        if not session.block.begin():
            session.notice("there is already a transaction in progress", "25001")
            return Outcome("BEGIN")
        isolation.began(session, sql)
        if session.forward is not None:
            session.forward.began(sql)
        return Outcome("BEGIN")
    if kind in ("commit", "rollback"):
        if session.forward is not None:
            session.forward.ended()
        session.read_seq = None
        return await _end_block(session, commit=kind == "commit")
    if kind in ("savepoint", "release", "rollback_to"):
        return _savepoint(session, kind, sql)
    if kind == "set":
        return _set(session, sql)
    if kind == "show":
        return _show(session, sql)
    if kind == "reset":
        return Outcome("RESET")
    if kind == "discard":
        session.statements = {k: v for k, v in session.statements.items() if k == ""}
        cursors.close_all(session)
        session.portals.clear()
        session.min_seq = 0
        return Outcome("DISCARD ALL")
    if kind == "listen":
        return Outcome("LISTEN")
    if kind == "unlisten":
        return Outcome("UNLISTEN")
    if kind == "copy":
        return await _copy(session, prepared)
    if kind == "lock":
        await isolation.lock_table(session, sql)
        return Outcome("LOCK TABLE")
    if kind == "owner":
        return _owner(session, sql)
    if kind == "deallocate":
        found = _DEALLOCATE.match(sql)
        name = found.group(1).strip('"') if found else ""
        if name.lower() == "all":
            session.statements = {k: v for k, v in session.statements.items() if k == ""}
            return Outcome("DEALLOCATE ALL")
        session.statements.pop(name, None)
        return Outcome("DEALLOCATE")
    if kind == "enum_type":
        return _enum_type(session, sql)
    if kind == "comment":
        session.notice("comments are not kept: SQLite has nowhere to store them", "01000")
        return Outcome("COMMENT")
    if kind == "grant":
        session.notice("privileges are not managed: the one user (--pg-user) may do everything", "01000")
        return Outcome(sql.split()[0].upper())
    if kind == "extension":
        return _extension(session, sql)
    raise PgError("0A000", f"{sql.split()[0] if sql.split() else sql!r} is not supported")


def _extension(session: SessionState, sql: str) -> Outcome:
    """``CREATE EXTENSION`` of what is built in succeeds and does nothing, so that migrations asking for it
    run: pgcrypto's ``gen_random_uuid()`` and uuid-ossp's ``uuid_generate_v4()`` are translated, and plpgsql
    is there in every PostgreSQL (though no function can be created here). Any other is refused."""
    found = _EXTENSION.match(sql)
    name = (found.group(1) or found.group(2) or "") if found else ""
    if sql.split()[0].upper() == "DROP":
        return Outcome("DROP EXTENSION")
    if name.lower() not in _BUILT_IN_EXTENSIONS:
        raise PgError(
            "0A000", f'extension "{name}" is not available', hint="pgcrypto and uuid-ossp are built in"
        )
    session.notice(f'extension "{name}" is built in: nothing to create', "01000")
    return Outcome("CREATE EXTENSION")


def _enum_type(session: SessionState, sql: str) -> Outcome:
    """``CREATE TYPE … AS ENUM``, ``ALTER TYPE … ADD VALUE``, ``DROP TYPE``: accepted, and nothing to do.

    SQLite has no types to create: a column declared with the enum's name holds its labels as text, and is
    announced as text, which ORMs map back to their enum (SQLAlchemy creates the type before the table). The
    labels are not checked, which the client hears as a notice. Other kinds of type are refused.
    """
    verb = sql.split()[0].upper()
    if verb == "CREATE" and _AS_ENUM.search(sql) is None:
        raise PgError("0A000", "only enum types can be created (CREATE TYPE … AS ENUM)")
    if verb == "ALTER" and _ADD_VALUE.search(sql) is None:
        raise PgError("0A000", "only ALTER TYPE … ADD VALUE is supported")
    if verb != "DROP":
        session.notice("enum types are not enforced here: a column of this type holds any text", "01000")
    return Outcome(f"{verb} TYPE")


async def _copy(session: SessionState, prepared: Prepared) -> Outcome:
    """COPY FROM STDIN / TO STDOUT: ``copy/operation.py`` runs the CopyData exchange; its errors are ours."""
    try:
        return Outcome(await Copy(session, prepared.sql).run())
    except CopyError as e:
        raise PgError(e.code, e.message, hint=e.hint, context=e.context, fatal=e.fatal) from e


async def _end_block(session: SessionState, *, commit: bool) -> Outcome:
    ended = session.block.end(commit=commit)
    if ended.was_open:
        cursors.block_ended(session, committed=ended.commit)
    tag = "COMMIT" if ended.commit else "ROLLBACK"
    if not ended.was_open:
        session.notice("there is no transaction in progress", "25P01")
        return Outcome("COMMIT" if commit else "ROLLBACK")
    tx = ended.tx
    isolation.ended(session)
    if tx is None:
        return Outcome(tag)
    if not ended.commit:
        tx.rollback()
        return Outcome("ROLLBACK")
    db = session._db()
    notices = []
    try:
        _, seq = await db.commit(tx)
    except ReplicationPending as e:
        notices.append(e.message)  # committed here, published later: not an error
        seq = None
    except HAError as e:
        raise PgError.of(e) from e
    if seq is not None:
        session.last_seq = seq
        session.send(codec.parameter_status("ha.seq", str(seq)))
    for text in notices:
        session.notice(text)
    return Outcome("COMMIT")


def _savepoint(session: SessionState, kind: str, sql: str) -> Outcome:
    found = _SAVEPOINT.match(sql)
    if found is None:
        raise PgError("42601", f"cannot read the savepoint name in {sql!r}")
    name = found.group(2)
    block = session.block
    try:
        if kind == "savepoint":
            if block.savepoint(name) and block.tx is not None:
                block.tx.savepoint(name)
            return Outcome("SAVEPOINT")
        if kind == "release":
            if block.release(name) and block.tx is not None:
                block.tx.release(name)
            return Outcome("RELEASE")
        if block.rollback_to(name) and block.tx is not None:
            block.tx.rollback_to(name)
            block.rolled_back_to()
        return Outcome("ROLLBACK")
    except BlockError as e:
        raise PgError(e.code, e.message) from e
    except HAError as e:
        raise PgError("3B001" if "does not exist" in e.message else sqlstate(e), e.message) from e


_SET_CONSTRAINTS = re.compile(r"^\s*set\s+constraints\s+(.+?)\s+(deferred|immediate)\s*;?\s*$", re.I | re.S)


def _set_constraints(session: SessionState, mode: str) -> Outcome:
    """``SET CONSTRAINTS … DEFERRED|IMMEDIATE``. SQLite's deferrable foreign keys are deferred as declared (as
    Django declares them); IMMEDIATE checks what the transaction did so far, as PostgreSQL checks the pending
    ones, and fails with 23503 on a violation. Later statements are checked as their constraints are
    declared: a violation of a deferred one still fails, at COMMIT."""
    if not session.in_block:
        session.notice("SET CONSTRAINTS can only be used in transaction blocks", "25P01")
        return Outcome("SET CONSTRAINTS")
    tx = session.tx
    if mode.lower() == "immediate" and tx is not None and session._db().db.spec.foreign_keys:
        broken = tx.connection.execute("PRAGMA foreign_key_check").fetchall()
        if broken:
            table, _, parent, _ = broken[0]
            raise PgError(
                "23503",
                f'insert or update on table "{table}" violates a foreign key constraint: a row references a '
                f'missing row of "{parent}"',
            )
    return Outcome("SET CONSTRAINTS")


_OWNER_TO = re.compile(r"^\s*ALTER\s+(.+?)\s+OWNER\s+TO\s+(.+?)\s*;?\s*$", re.I | re.S)


def _owner(session: SessionState, sql: str) -> Outcome:
    """``ALTER TABLE … OWNER TO role`` (pg_dump writes one per object): everything belongs to the one
    owner already, so the session's own user (or CURRENT_USER) is granted as is; another role does not
    exist here."""
    found = _OWNER_TO.match(sql)
    what, role = (found.group(1), found.group(2)) if found else ("", "")
    name = role.strip('"')
    if role.lower() not in ("current_user", "session_user", "current_role") and name != session.user:
        raise PgError("42704", f'role "{name}" does not exist')
    words = what.split()
    tag = "ALTER " + " ".join(words[:2] if words[0].upper() == "MATERIALIZED" else words[:1]).upper()
    return Outcome(tag)


def _set(session: SessionState, sql: str) -> Outcome:
    constraints = _SET_CONSTRAINTS.match(sql)
    if constraints is not None:
        return _set_constraints(session, constraints.group(2))
    if isolation.is_set_transaction(sql):
        isolation.set_transaction(session, sql)
        return Outcome("SET")
    found = _SET.match(sql) or _SET_NAMES.match(sql)
    if found is None:
        raise PgError("42601", f"cannot read {sql!r}")
    groups = found.groups()
    name, value = (groups[-2], groups[-1])
    name = " ".join(name.lower().split())
    value = value.strip().strip("'\"")
    if name == "database":
        db = find_database(session.node, value)
        if db is None:
            raise PgError("3D000", f'database "{value}" does not exist', hint=databases_hint(session.node))
        if session.in_block:
            raise PgError("25001", "SET DATABASE cannot run inside a transaction block")
        check_connect(session, db, fatal=False)
        session.db = db
        return Outcome("SET")
    if name == "ha.read_level":
        level = {"none": "none", "strong": "strong", "linearizable": "strong", "default": "none"}.get(
            value.lower()
        )
        if level is None:
            raise PgError("22023", f"ha.read_level must be none, strong or linearizable, not {value!r}")
        session.read_level = level
        return Outcome("SET")
    if name == "ha.read_seq" and session.forwarded_by is not None:  # see forwarding/writer.py
        try:
            session.read_seq = int(value)
        except ValueError:
            raise PgError("22023", f"ha.read_seq must be a sequence number, not {value!r}") from None
        return Outcome("SET")
    if name == "ha.min_seq":
        try:
            session.min_seq = max(0, int(value))
        except ValueError:
            raise PgError("22023", f"ha.min_seq must be a sequence number, not {value!r}") from None
        return Outcome("SET")
    if name in ("time zone", "timezone") and value.lower() not in _UTC_NAMES:
        # timestamptz values print in UTC whatever the setting: accepting another would pretend
        raise PgError(
            "0A000",
            f"the session time zone is always UTC here, not {value!r}",
            hint="timestamptz values come with their offset (+00): clients convert them to their own zone",
        )
    session.params[name] = value
    return Outcome("SET")


_UTC_NAMES = frozenset(
    ("utc", "etc/utc", "gmt", "etc/gmt", "z", "zulu", "uct", "0", "+00", "+00:00", "default", "local")
)


def _show(session: SessionState, sql: str) -> Outcome:
    found = _SHOW.match(sql)
    name = " ".join(found.group(1).lower().split()) if found else ""
    if name == "databases":
        column = t.Column("database", t.TEXT, False)
        return Outcome("SHOW", [column], [(ident,) for ident in session.node.database_ids()])
    value = _setting(session, name)
    return Outcome("SHOW", [t.Column(show_label(sql), t.TEXT, False)], [(value,)])


def _setting(session: SessionState, name: str) -> str:
    fixed = {
        "server_version": SERVER_VERSION,
        "server_version_num": "150000",
        "server_encoding": "UTF8",
        "client_encoding": "UTF8",
        "standard_conforming_strings": "on",
        "transaction isolation level": session.mode.level,
        "default_transaction_isolation": session.default_mode.level,
        "transaction_isolation": session.mode.level,
        "transaction_read_only": "on" if session.mode.read_only else "off",
        "default_transaction_read_only": "on" if session.default_mode.read_only else "off",
        "datestyle": "ISO, MDY",
        "timezone": "UTC",
        "integer_datetimes": "on",
        "max_identifier_length": "63",
        "search_path": '"$user", public',
        "ha.seq": str(session.last_seq or 0),
        "ha.min_seq": str(session.min_seq),
        "ha.read_level": session.read_level,
        "ha.database": session.db.id if session.db is not None else "",
    }
    if name in fixed:
        return fixed[name]
    if name in session.params:
        return session.params[name]
    raise PgError("42704", f'unrecognized configuration parameter "{name}"')


def show_label(sql: str) -> str:
    """The column name PostgreSQL gives a SHOW's answer (``SHOW transaction isolation level``: the last
    word; ``SHOW DATABASES``: database)."""
    found = _SHOW.match(sql)
    name = " ".join(found.group(1).lower().split()) if found else ""
    if name == "databases":
        return "database"
    return name.split()[-1] if name.startswith("transaction") else name
