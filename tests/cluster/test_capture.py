"""Every way a write can change rows reaches the other nodes: the capture misses nothing and describes it
right. In process on the in-memory hub, real SQLite, file and in-memory databases alike.

For each path: after the writes on one node, every node holds the same rows in every table (compared table by
table), and every write that changed something answered a ``seq``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import apsw
import pytest

from sqlite_ha.db.database import Database
from sqlite_ha.db.dsn import parse_dsn
from sqlite_ha.db.statement import Statement
from sqlite_ha.errors import StatementNotAllowed
from sqlite_ha.replication.memory import MemoryHub
from sqlite_ha.replication.replicated_database import ReplicatedDatabase


@dataclass(frozen=True)
class Path_:
    """One capture path: the schema, then requests run one after the other on the writing node."""

    schema: tuple[str, ...]
    writes: tuple[str, ...]
    node: str = "a"  # which node writes
    gone: tuple[str, ...] = ()  # objects the writes drop: none may be left on any node


PATHS: dict[str, Path_] = {
    "delete_without_where": Path_(
        ("CREATE TABLE t(id INTEGER PRIMARY KEY, v)", "INSERT INTO t VALUES (1, 'x'), (2, 'y')"),
        ("DELETE FROM t", "INSERT INTO t VALUES (3, 'z')", "DELETE FROM t"),
    ),
    "delete_without_where_on_the_other_node": Path_(
        ("CREATE TABLE t(id INTEGER PRIMARY KEY, v)", "INSERT INTO t VALUES (1, 'x'), (2, 'y')"),
        ("DELETE FROM t",),
        node="b",
    ),
    "delete_without_where_no_primary_key": Path_(
        ("CREATE TABLE t(a, b)", "INSERT INTO t VALUES (1, 'x'), (1, 'x'), (2, NULL)"),
        ("DELETE FROM t",),
    ),
    "delete_without_where_without_rowid": Path_(
        ("CREATE TABLE t(k TEXT PRIMARY KEY, v) WITHOUT ROWID", "INSERT INTO t VALUES ('a', 1), ('b', 2)"),
        ("DELETE FROM t",),
    ),
    "delete_without_where_in_a_batch": Path_(
        ("CREATE TABLE t(id INTEGER PRIMARY KEY, v)", "INSERT INTO t VALUES (1, 'x'), (2, 'y')"),
        ("INSERT INTO t VALUES (3, 'z'); DELETE FROM t; INSERT INTO t VALUES (4, 'w')",),
    ),
    "replace_deletes_the_conflicting_row": Path_(
        (
            "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE, n)",
            "INSERT INTO u VALUES (1, 'a@x', 0), (2, 'b@x', 0)",
        ),
        ("REPLACE INTO u VALUES (3, 'a@x', 1)", "INSERT OR REPLACE INTO u VALUES (2, 'c@x', 2)"),
    ),
    "replace_on_two_unique_keys": Path_(
        (
            "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE, nick TEXT UNIQUE)",
            "INSERT INTO u VALUES (1, 'a@x', 'a'), (2, 'b@x', 'b')",
        ),
        ("INSERT OR REPLACE INTO u VALUES (3, 'a@x', 'b')",),
    ),
    "replace_no_primary_key": Path_(
        ("CREATE TABLE u(email TEXT UNIQUE, n)", "INSERT INTO u VALUES ('a@x', 0), ('b@x', 0)"),
        (
            "REPLACE INTO u VALUES ('a@x', 1)",
            "INSERT INTO u VALUES ('b@x', 2) ON CONFLICT(email) DO UPDATE SET n = excluded.n",
        ),
    ),
    "upsert": Path_(
        ("CREATE TABLE c(k TEXT PRIMARY KEY, n INTEGER)", "INSERT INTO c VALUES ('a', 1)"),
        (
            "INSERT INTO c VALUES ('a', 1) ON CONFLICT(k) DO UPDATE SET n = n + excluded.n",
            "INSERT INTO c VALUES ('b', 5) ON CONFLICT(k) DO UPDATE SET n = n + excluded.n",
            "INSERT INTO c VALUES ('a', 9) ON CONFLICT DO NOTHING",
        ),
    ),
    "foreign_key_cascades": Path_(
        (
            "CREATE TABLE p(id INTEGER PRIMARY KEY, name)",
            "CREATE TABLE c(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id) ON DELETE CASCADE "
            "ON UPDATE CASCADE)",
            "CREATE TABLE s(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id) ON DELETE SET NULL "
            "ON UPDATE SET NULL)",
            "INSERT INTO p VALUES (1, 'one'), (2, 'two'), (3, 'three')",
            "INSERT INTO c VALUES (10, 1), (11, 1), (12, 2), (13, 3)",
            "INSERT INTO s VALUES (20, 1), (21, 2)",
        ),
        ("DELETE FROM p WHERE id = 1", "UPDATE p SET id = 22 WHERE id = 2", "DELETE FROM p"),
    ),
    "drop_table_with_cascade": Path_(
        (
            "CREATE TABLE p(id INTEGER PRIMARY KEY)",
            "CREATE TABLE c(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id) ON DELETE CASCADE)",
            "INSERT INTO p VALUES (1), (2)",
            "INSERT INTO c VALUES (10, 1), (11, 2), (12, NULL)",
        ),
        ("DELETE FROM p", "DROP TABLE p", "DROP TABLE c"),
        gone=("p", "c"),
    ),
    "drop_with_rows": Path_(
        (
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v)",
            "CREATE TABLE n(a, b)",
            "CREATE INDEX t_v ON t(v)",
            "CREATE VIEW tv AS SELECT v FROM t",
            "CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN INSERT INTO n VALUES (new.id, new.v); END",
            "INSERT INTO t VALUES (1, 'x'), (2, 'y')",
        ),
        ("DROP TRIGGER t_ins", "DROP VIEW tv", "DROP INDEX t_v", "DROP TABLE t", "DROP TABLE n"),
        gone=("t_ins", "tv", "t_v", "t", "n"),
    ),
    "triggers": Path_(
        (
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v)",
            "CREATE TABLE audit(n INTEGER PRIMARY KEY, what, id, v)",
            "CREATE TRIGGER t_ins AFTER INSERT ON t BEGIN INSERT INTO audit(what, id, v) "
            "VALUES ('ins', new.id, new.v); END",
            "CREATE TRIGGER t_upd AFTER UPDATE ON t BEGIN INSERT INTO audit(what, id, v) "
            "VALUES ('upd', new.id, new.v); END",
            "CREATE TRIGGER t_del BEFORE DELETE ON t BEGIN INSERT INTO audit(what, id, v) "
            "VALUES ('del', old.id, old.v); END",
        ),
        (
            "INSERT INTO t VALUES (1, 'a'), (2, 'b')",
            "UPDATE t SET v = v || '!'",
            "DELETE FROM t WHERE id = 1",
            "DELETE FROM t",
        ),
    ),
    "trigger_changes_another_row_of_the_same_table": Path_(
        (
            "CREATE TABLE t(id INTEGER PRIMARY KEY, v, total)",
            "INSERT INTO t VALUES (0, 'sum', 0)",
            "CREATE TRIGGER t_sum AFTER INSERT ON t WHEN new.id <> 0 BEGIN "
            "UPDATE t SET total = total + 1 WHERE id = 0; END",
        ),
        ("INSERT INTO t(id, v) VALUES (1, 'a'), (2, 'b')",),
    ),
    "generated_columns": Path_(
        (
            "CREATE TABLE g(id INTEGER PRIMARY KEY, a INTEGER, b INTEGER, "
            "v INTEGER GENERATED ALWAYS AS (a + b) VIRTUAL, "
            "s TEXT GENERATED ALWAYS AS (a || '-' || b) STORED, "
            "z TEXT)",
        ),
        (
            "INSERT INTO g(id, a, b, z) VALUES (1, 1, 2, 'x'), (2, 3, 4, 'y')",
            "UPDATE g SET a = 10 WHERE id = 1",
            "UPDATE g SET z = 'zz'",
            "DELETE FROM g WHERE id = 2",
            "REPLACE INTO g(id, a, b, z) VALUES (1, 5, 5, 'r')",
        ),
    ),
    "generated_columns_no_primary_key": Path_(
        ("CREATE TABLE g(a INTEGER, v INTEGER AS (a * 2), s INTEGER AS (a * 3) STORED, b)",),
        (
            "INSERT INTO g(a, b) VALUES (1, 'x'), (2, 'y')",
            "UPDATE g SET a = a + 10",
            "DELETE FROM g WHERE a = 12",
        ),
    ),
    "generated_columns_without_rowid": Path_(
        (
            "CREATE TABLE g(k TEXT PRIMARY KEY, a INTEGER, s INTEGER AS (a * 3) STORED, v AS (k || a)) "
            "WITHOUT ROWID",
        ),
        (
            "INSERT INTO g(k, a) VALUES ('x', 1), ('y', 2)",
            "UPDATE g SET a = 7 WHERE k = 'x'",
            "DELETE FROM g",
        ),
    ),
    "without_rowid": Path_(
        ("CREATE TABLE w(a TEXT, b INTEGER, v, PRIMARY KEY (a, b)) WITHOUT ROWID",),
        (
            "INSERT INTO w VALUES ('x', 1, 'one'), ('x', 2, 'two'), ('y', 1, 'three')",
            "UPDATE w SET v = 'changed' WHERE a = 'x'",
            "UPDATE w SET b = 5 WHERE a = 'y'",
            "DELETE FROM w WHERE b = 2",
        ),
    ),
    "no_primary_key": Path_(
        ("CREATE TABLE n(a, b)",),
        (
            "INSERT INTO n VALUES (1, 'x'), (1, 'x'), (2, 'y')",
            "UPDATE n SET b = 'z' WHERE a = 2",
            "DELETE FROM n WHERE rowid = (SELECT min(rowid) FROM n)",
        ),
    ),
    "statement_rollback": Path_(
        ("CREATE TABLE t(id INTEGER PRIMARY KEY, v NOT NULL)", "INSERT INTO t VALUES (1, 'a')"),
        ("INSERT OR IGNORE INTO t VALUES (1, 'b'), (2, 'c')", "UPDATE OR IGNORE t SET id = 1 WHERE id = 2"),
    ),
    "fts5": Path_(
        ("CREATE VIRTUAL TABLE docs USING fts5(title, body)",),
        (
            "INSERT INTO docs(rowid, title, body) VALUES (1, 'sqlite', 'a replicated database')",
            "INSERT INTO docs(title, body) VALUES ('nats', 'a message log'), ('fts', 'search in sqlite')",
            "UPDATE docs SET body = 'the log of every change' WHERE rowid = 2",
            "DELETE FROM docs WHERE rowid = 1",
            "INSERT INTO docs(docs) VALUES ('optimize')",
            "INSERT INTO docs(docs) VALUES ('rebuild')",
            "INSERT INTO docs(docs, rank) VALUES ('merge', 500)",
            "UPDATE docs SET rowid = 7 WHERE rowid = 3",
            "INSERT OR REPLACE INTO docs(rowid, title, body) VALUES (7, 'replaced', 'by rowid')",
            "DELETE FROM docs",
            "INSERT INTO docs(rowid, title, body) VALUES (8, 'last', 'row')",
            "DROP TABLE docs",
        ),
        gone=("docs", "docs_content", "docs_data"),
    ),
    "fts5_created_and_written_in_one_request": Path_(
        (),
        (
            "CREATE VIRTUAL TABLE docs USING fts5(body, extra UNINDEXED, tokenize = 'unicode61'); "
            "INSERT INTO docs(body, extra) VALUES ('made with its table', 1), ('and another', 2)",
        ),
    ),
    "fts5_written_on_two_nodes": Path_(
        ("CREATE VIRTUAL TABLE docs USING fts5(title, body, tokenize = 'porter')",),
        (
            "INSERT INTO docs(rowid, title, body) VALUES (10, 'written', 'on node b searching')",
            "DELETE FROM docs WHERE docs MATCH 'written'",
            "INSERT INTO docs(rowid, title, body) VALUES (11, 'again', 'searches')",
        ),
        node="b",
    ),
    "fts5_trigger_from_an_ordinary_table": Path_(
        (
            "CREATE TABLE notes(id INTEGER PRIMARY KEY, text)",
            "CREATE VIRTUAL TABLE notes_fts USING fts5(text)",
            "CREATE TRIGGER notes_ai AFTER INSERT ON notes BEGIN "
            "INSERT INTO notes_fts(rowid, text) VALUES (new.id, new.text); END",
            "CREATE TRIGGER notes_ad AFTER DELETE ON notes BEGIN "
            "DELETE FROM notes_fts WHERE rowid = old.id; END",
        ),
        (
            "INSERT INTO notes VALUES (1, 'hello world'), (2, 'goodbye world')",
            "DELETE FROM notes WHERE id = 1",
        ),
    ),
}


async def open_nodes(tmp: Path, memory: bool) -> tuple[MemoryHub, list[ReplicatedDatabase]]:
    hub = MemoryHub()
    nodes = []
    for name in ("a", "b", "c"):
        (tmp / name).mkdir()
        spec = parse_dsn(f"file:{tmp / name / 'app.db'}?_fk=1", memory=memory)
        rdb = ReplicatedDatabase(Database(spec), hub.connect(name), node=name)
        await rdb.start()
        nodes.append(rdb)
    return hub, nodes


async def close(nodes: list[ReplicatedDatabase]) -> None:
    for rdb in nodes:
        await rdb.close()
        await rdb.replicator.close()
        rdb.db.close()


async def write(rdb: ReplicatedDatabase, sql: str) -> int | None:
    """Run one request; assert it answered a seq exactly when it changed rows or the schema."""
    before = contents(rdb)
    _, seq = await rdb.execute([Statement(sql=sql)])
    changed = contents(rdb) != before
    assert (seq is not None) == changed, f"{sql!r}: changed={changed} but seq={seq}"
    return seq


def contents(rdb: ReplicatedDatabase) -> dict[str, list[tuple[Any, ...]]]:
    """Every user table's rows, sorted; virtual tables by rowid; the schema itself."""
    conn = rdb.db.reader_connection
    out: dict[str, list[tuple[Any, ...]]] = {}
    schema = conn.execute(
        "SELECT type, name, sql FROM sqlite_schema WHERE name NOT LIKE '\\_ha\\_%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    out["sqlite_schema"] = sorted(schema, key=repr)
    tables = conn.execute(
        "SELECT name, type FROM pragma_table_list WHERE schema = 'main' AND type IN ('table', 'virtual') "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_ha\\_%' ESCAPE '\\'"
    ).fetchall()
    for name, kind in tables:
        quoted = '"' + str(name).replace('"', '""') + '"'
        if kind == "virtual":
            out[str(name)] = conn.execute(f"SELECT rowid, * FROM {quoted} ORDER BY rowid").fetchall()
        else:
            out[str(name)] = sorted(conn.execute(f"SELECT * FROM {quoted}").fetchall(), key=repr)
    return out


def schema_names(rdb: ReplicatedDatabase) -> set[str]:
    return {str(r[0]) for r in rdb.db.reader_connection.execute("SELECT name FROM sqlite_schema")}


async def converged(nodes: list[ReplicatedDatabase], seq: int) -> None:
    for rdb in nodes:
        await rdb.wait_applied(seq, 10)
    expected = contents(nodes[0])
    for rdb in nodes[1:]:
        assert contents(rdb) == expected, f"node {rdb.node} differs from node {nodes[0].node}"
    for rdb in nodes:
        assert rdb.changes.parked() == {}, rdb.changes.stats.last_error
        fts5_integrity_check(rdb)


def fts5_integrity_check(rdb: ReplicatedDatabase) -> None:
    """FTS5's own check that each FTS5 table's index matches its rows (raises if not)."""
    with rdb.db.internal() as conn:
        tables = conn.execute(
            "SELECT name FROM sqlite_schema WHERE sql LIKE 'CREATE VIRTUAL TABLE%fts5%'"
        ).fetchall()
        for (name,) in tables:
            conn.execute(f'INSERT INTO "{name}"("{name}", rank) VALUES (\'integrity-check\', 0)')


@pytest.mark.parametrize("memory", [False, True], ids=["file", "memory"])
@pytest.mark.parametrize("name", list(PATHS))
def test_every_change_reaches_every_node(tmp_path: Path, name: str, memory: bool) -> None:
    path = PATHS[name]

    async def scenario() -> None:
        _, nodes = await open_nodes(tmp_path, memory)
        by_name = {n.node: n for n in nodes}
        last = 0
        try:
            for sql in path.schema:
                seq = await write(nodes[0], sql)
                last = max(last, seq or 0)
            await converged(nodes, last)
            writer = by_name[path.node]
            for sql in path.writes:
                seq = await write(writer, sql)
                last = max(last, seq or 0)
                await converged(nodes, last)
            for rdb in nodes:
                left = [name for name in path.gone if name in schema_names(rdb)]
                assert not left, f"node {rdb.node} still has {left}"
        finally:
            await close(nodes)

    asyncio.run(scenario())


def test_fts5_search_answers_alike_on_every_node(tmp_path: Path) -> None:
    async def scenario() -> None:
        _, nodes = await open_nodes(tmp_path, False)
        a, b, c = nodes
        try:
            await write(a, "CREATE VIRTUAL TABLE docs USING fts5(title, body)")
            for i in range(50):
                await write(
                    nodes[i % 3],
                    f"INSERT INTO docs(rowid, title, body) VALUES ({i + 1}, 't{i}', "
                    f"'word{i % 7} common text number {i}')",
                )
            await write(b, "DELETE FROM docs WHERE rowid % 5 = 0")
            seq = await write(c, "UPDATE docs SET body = 'replaced common' WHERE rowid % 3 = 0")
            assert seq is not None
            await converged(nodes, seq)
            query = "SELECT rowid, title, bm25(docs) FROM docs WHERE docs MATCH ? ORDER BY rank, rowid"
            for term in ("common", "word3", "replaced", "number"):
                answers = [
                    (await n.db.execute([Statement(sql=query, bindings=(term,))])).results[0].rows
                    for n in nodes
                ]
                assert answers[0], term
                assert answers[1] == answers[0] == answers[2], term
        finally:
            await close(nodes)

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TEMP TABLE tmp(x)",
        "CREATE TABLE temp.tmp(x)",
        "CREATE TEMP VIEW tv AS SELECT 1",
        "CREATE VIEW temp.tv AS SELECT 1",
        "CREATE VIRTUAL TABLE temp.vt USING fts5(x)",
        "CREATE TEMP TRIGGER tt AFTER INSERT ON t BEGIN INSERT INTO t VALUES (NULL, 'again'); END",
        "CREATE TRIGGER temp.tt AFTER INSERT ON main.t BEGIN INSERT INTO t VALUES (NULL, 'again'); END",
    ],
)
def test_temp_schema_is_refused_and_breaks_nothing(tmp_path: Path, sql: str) -> None:
    """Clients share connections, so TEMP objects are refused: nothing in the temp schema can change rows
    unseen (a temp trigger writing main tables) or hold rows that would wrongly replicate."""

    async def scenario() -> None:
        _, nodes = await open_nodes(tmp_path, False)
        a = nodes[0]
        try:
            await write(a, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
            with pytest.raises(StatementNotAllowed, match="TEMP"):
                await a.execute([Statement(sql=sql)])
            seq = await write(a, "INSERT INTO t VALUES (1, 'after')")
            assert seq is not None
            await converged(nodes, seq)
            assert contents(a)["t"] == [(1, "after")]
        finally:
            await close(nodes)

    asyncio.run(scenario())


UNREPLICABLE = [
    "CREATE VIRTUAL TABLE v USING fts5(body, content='')",
    "CREATE VIRTUAL TABLE v USING fts5(body, content='notes', content_rowid='id')",
    "CREATE VIRTUAL TABLE v USING fts4(body)",
    "CREATE VIRTUAL TABLE v USING rtree(id, x0, x1)",
]


@pytest.mark.parametrize("schema", UNREPLICABLE)
def test_virtual_tables_that_cannot_replicate_are_refused(tmp_path: Path, schema: str) -> None:
    """A virtual table whose rows the capture cannot read back as rows (contentless or external-content FTS5,
    FTS3/4, R*Tree) would differ between nodes: creating one is refused."""

    async def scenario() -> None:
        _, nodes = await open_nodes(tmp_path, False)
        a = nodes[0]
        try:
            seq = await write(a, "CREATE TABLE notes(id INTEGER PRIMARY KEY, body)")
            with pytest.raises(StatementNotAllowed, match="cannot be replicated"):
                await a.execute([Statement(sql=schema)])
            assert "v" not in contents(a)
            assert seq is not None
            await converged(nodes, seq)
        finally:
            await close(nodes)

    asyncio.run(scenario())


@pytest.mark.parametrize("schema", UNREPLICABLE)
def test_writes_to_a_virtual_table_that_predates_replication_are_refused(tmp_path: Path, schema: str) -> None:
    """The same virtual table in a database that had it before it was replicated: its writes are refused
    and rolled back, instead of committing on this node alone."""
    (tmp_path / "a").mkdir()
    plain = apsw.Connection(str(tmp_path / "a" / "app.db"))
    plain.execute("CREATE TABLE notes(id INTEGER PRIMARY KEY, body)")
    plain.execute(schema)
    plain.close()
    column, values = ("id, x0, x1", "1, 0.5, 2.5") if "rtree" in schema else ("rowid, body", "1, 'text'")

    async def scenario() -> None:
        hub = MemoryHub()
        a = ReplicatedDatabase(
            Database(parse_dsn(str(tmp_path / "a" / "app.db"), memory=False)), hub.connect("a"), node="a"
        )
        await a.start()
        try:
            before = contents(a)
            with pytest.raises(StatementNotAllowed, match="cannot be replicated"):
                await a.execute([Statement(sql=f"INSERT INTO v({column}) VALUES ({values})")])
            assert contents(a) == before
            _, seq = await a.execute([Statement(sql="INSERT INTO notes VALUES (1, 'still writable')")])
            assert seq is not None
        finally:
            await close([a])

    asyncio.run(scenario())


def test_fts5_options_set_by_insert_are_refused(tmp_path: Path) -> None:
    async def scenario() -> None:
        _, nodes = await open_nodes(tmp_path, False)
        a = nodes[0]
        try:
            await write(a, "CREATE VIRTUAL TABLE docs USING fts5(body)")
            with pytest.raises(StatementNotAllowed, match="configuration"):
                await a.execute([Statement(sql="INSERT INTO docs(docs, rank) VALUES ('rank', 'bm25(2.0)')")])
            seq = await write(a, "INSERT INTO docs(rowid, body) VALUES (1, 'ranked per query')")
            assert seq is not None
            await converged(nodes, seq)
        finally:
            await close(nodes)

    asyncio.run(scenario())


def test_fts5_concurrent_writes_to_one_row_converge(tmp_path: Path) -> None:
    """Two nodes write the same FTS5 rows at once, and the change sets arrive in different orders: the
    newest version of each row wins everywhere (as for any table), and each node's index follows its rows,
    so searches answer alike."""

    async def scenario() -> None:
        hub = MemoryHub(auto=False)
        nodes = []
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
            db = Database(parse_dsn(str(tmp_path / name / "app.db"), memory=False))
            rdb = ReplicatedDatabase(db, hub.connect(name), node=name)
            await rdb.start()
            nodes.append(rdb)
        a, b = nodes
        try:
            _, created = await a.execute([Statement(sql="CREATE VIRTUAL TABLE docs USING fts5(body)")])
            _, first = await a.execute(
                [Statement(sql="INSERT INTO docs(rowid, body) VALUES (1, 'one'), (2, 'two')")]
            )
            assert created is not None
            assert first is not None
            await hub.deliver("b", a.db.id, [created, first])
            writes = {
                "a": [
                    "UPDATE docs SET body = 'alpha from a' WHERE rowid = 1",
                    "DELETE FROM docs WHERE rowid = 2",
                ],
                "b": [
                    "UPDATE docs SET body = 'beta from b' WHERE rowid = 1",
                    "UPDATE docs SET body = 'beta two' WHERE rowid = 2",
                    "INSERT INTO docs(rowid, body) VALUES (3, 'beta three')",
                ],
            }
            seqs: dict[str, list[int]] = {"a": [], "b": []}
            for i in range(3):
                for rdb in (a, b):
                    if i < len(writes[rdb.node]):
                        _, seq = await rdb.execute([Statement(sql=writes[rdb.node][i])])
                        assert seq is not None
                        seqs[rdb.node].append(seq)
            await hub.deliver("a", a.db.id, list(reversed(seqs["b"])))  # b's writes, newest first
            await hub.deliver("b", a.db.id, seqs["a"] + seqs["a"])  # a's, twice
            await hub.deliver_all()
            assert contents(a) == contents(b)
            for term in ("alpha", "beta", "two", "three", "one"):
                query = "SELECT rowid, body FROM docs WHERE docs MATCH ? ORDER BY rank, rowid"
                answers = [
                    (await n.db.execute([Statement(sql=query, bindings=(term,))])).results[0].rows
                    for n in nodes
                ]
                assert answers[0] == answers[1], term
            for rdb in nodes:
                fts5_integrity_check(rdb)
        finally:
            await close(nodes)

    asyncio.run(scenario())


@pytest.mark.parametrize("memory", [False, True], ids=["file", "memory"])
def test_header_pragmas_replicate(tmp_path: Path, memory: bool) -> None:
    """``PRAGMA user_version = N`` and ``application_id`` (which clients may set, and migration tools do)
    change the database file's header, which no session sees: they travel like schema changes."""

    async def scenario() -> None:
        _, nodes = await open_nodes(tmp_path, memory)
        a, b, _ = nodes
        try:
            _, seq = await a.execute([Statement(sql="PRAGMA user_version = 7")])
            assert seq is not None
            _, seq = await b.execute([Statement(sql="PRAGMA main.application_id = 1234")])
            assert seq is not None
            await converged(nodes, seq)
            for rdb in nodes:
                header = rdb.db.reader_connection.execute(
                    "SELECT * FROM pragma_user_version, pragma_application_id"
                ).fetchall()
                assert header == [(7, 1234)], rdb.node
            _, none = await a.execute([Statement(sql="PRAGMA user_version")])
            assert none is None  # reading it is a read
        finally:
            await close(nodes)

    asyncio.run(scenario())


def test_drop_table_of_a_referenced_table_with_rows_is_refused_clearly(tmp_path: Path) -> None:
    """With foreign keys on, SQLite deletes a referenced table's rows before dropping it (cascading to other
    tables): a change set cannot describe rows of a table that is gone, so the DROP is refused, saying how to
    do it, and nothing changes on any node."""

    async def scenario() -> None:
        _, nodes = await open_nodes(tmp_path, False)
        a = nodes[0]
        try:
            for sql in (
                "CREATE TABLE p(id INTEGER PRIMARY KEY)",
                "CREATE TABLE c(id INTEGER PRIMARY KEY, p INTEGER REFERENCES p(id) ON DELETE CASCADE)",
                "INSERT INTO p VALUES (1)",
            ):
                seq = await write(a, sql)
            seq = await write(a, "INSERT INTO c VALUES (10, 1)")
            assert seq is not None
            before = contents(a)
            with pytest.raises(StatementNotAllowed) as info:
                await a.execute([Statement(sql="DROP TABLE p")])
            assert "empty it with DELETE, then drop it" in str(info.value.hint)
            assert contents(a) == before
            await converged(nodes, seq)
        finally:
            await close(nodes)

    asyncio.run(scenario())
