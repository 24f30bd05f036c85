"""Transaction modes over the PG wire against a node: REPEATABLE READ reads one snapshot (COPY TO included)
while another session writes, READ ONLY refuses writes, and the session functions tools call (pg_backend_pid,
pg_stat_activity, pg_settings, current_schemas, set_config) answer for the session asking."""

from __future__ import annotations

import psycopg
import pytest

from sqlite_ha.testing import NodeProcess, free_port
from tests.conftest import NodeFactory

PASSWORD = "iso pass"


@pytest.fixture
def pg(node_factory: NodeFactory) -> NodeProcess:
    port = free_port()
    node = node_factory(args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD])
    node.pg_port = port  # type: ignore[attr-defined]
    return node


def connect(node: NodeProcess, **kwargs: str) -> psycopg.Connection[tuple[object, ...]]:
    port = node.pg_port  # type: ignore[attr-defined]
    return psycopg.connect(
        f"host=127.0.0.1 port={port} user=ha password='{PASSWORD}' dbname=app", autocommit=True, **kwargs
    )


def test_repeatable_read_reads_one_snapshot_while_others_write(pg: NodeProcess) -> None:
    with connect(pg) as reader, connect(pg) as writer:
        writer.execute("CREATE TABLE t (id INT PRIMARY KEY, v TEXT)")
        writer.execute("INSERT INTO t VALUES (1, 'a'), (2, 'b')")
        reader.execute("BEGIN")
        reader.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        assert reader.execute("SHOW transaction_isolation").fetchone() == ("repeatable read",)
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (2,)
        reader.execute("LOCK TABLE public.t IN ACCESS SHARE MODE")
        writer.execute("INSERT INTO t VALUES (3, 'c')")
        writer.execute("UPDATE t SET v = 'changed' WHERE id = 1")
        assert reader.execute("SELECT id, v FROM t ORDER BY id").fetchall() == [(1, "a"), (2, "b")]
        for _ in range(2):  # a prepared read (Bind/Execute, answered inline otherwise) reads it too
            found = reader.execute("SELECT count(*) FROM t WHERE id > %s", (0,), prepare=True).fetchone()
            assert found == (2,)
        with reader.cursor().copy("COPY t TO STDOUT") as copy:
            assert b"".join(bytes(chunk) for chunk in copy) == b"1\ta\n2\tb\n"  # pg_dump's COPY: the snapshot
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            reader.execute("INSERT INTO t VALUES (9, 'x')")
        reader.execute("ROLLBACK")
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (3,)  # the block over, the latest
        assert reader.execute("SHOW transaction_isolation").fetchone() == ("read committed",)

        # READ COMMITTED (the default) sees each commit
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (3,)
        writer.execute("INSERT INTO t VALUES (4, 'd')")
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (4,)
        reader.execute("COMMIT")


def test_repeatable_read_may_write_only_before_it_reads(pg: NodeProcess) -> None:
    with connect(pg) as conn:
        conn.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        conn.execute("INSERT INTO t VALUES (1)")  # first: the writer's transaction is the snapshot
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
        conn.execute("COMMIT")
        conn.execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
        conn.execute("SELECT count(*) FROM t")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="cannot write after it read"):
            conn.execute("INSERT INTO t VALUES (2)")
        conn.execute("ROLLBACK")
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO t VALUES (3)")  # autocommit statements too, as in PostgreSQL
        conn.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE")
        conn.execute("INSERT INTO t VALUES (3)")
        with pytest.raises(psycopg.errors.NoActiveSqlTransaction):
            conn.execute("LOCK TABLE t")
        conn.execute("BEGIN")
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("LOCK TABLE missing IN ACCESS SHARE MODE")
        conn.execute("ROLLBACK")
        with pytest.raises(psycopg.errors.SyntaxError):
            conn.execute("SET TRANSACTION ISOLATION LEVEL SOMETIMES")


def test_session_functions_and_views(pg: NodeProcess) -> None:
    with connect(pg, application_name="tool") as one, connect(pg) as two:
        one.execute("CREATE TABLE t (id INT PRIMARY KEY)")
        pid = one.execute("SELECT pg_backend_pid()").fetchone()
        assert pid == one.execute("SELECT pg_backend_pid()").fetchone()  # stable for the session
        assert pid == (one.info.backend_pid,)  # the pid BackendKeyData announced
        assert pid != two.execute("SELECT pg_backend_pid()").fetchone()
        two.execute("BEGIN")
        two.execute("SELECT count(*) FROM t")
        activity = one.execute(
            "SELECT pid, datname, usename, application_name, state, query FROM pg_stat_activity ORDER BY pid"
        ).fetchall()
        assert {row[0] for row in activity} == {pid[0], two.info.backend_pid}
        mine = next(row for row in activity if row[0] == pid[0])
        assert mine[1:5] == ("app.db", "ha", "tool", "active")
        assert "pg_stat_activity" in mine[5]
        theirs = next(row for row in activity if row[0] != pid[0])
        assert theirs[4:] == ("idle in transaction", "SELECT count(*) FROM t")
        two.execute("ROLLBACK")
        assert one.execute("SELECT datname, numbackends, xact_commit FROM pg_stat_database").fetchall() == [
            ("app.db", 2, None)  # its sessions; the counters are not kept (NULL, not a made-up 0)
        ]

        assert one.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
        assert one.execute("SELECT current_schemas(true)").fetchone() == (["pg_catalog", "public"],)
        assert one.execute("SELECT set_config('search_path', '', false)").fetchone() == ("",)
        assert one.execute("SELECT current_setting('search_path')").fetchone() == ("",)
        assert one.execute("SELECT current_schemas(false)").fetchone() == ([],)
        assert two.execute("SELECT current_setting('search_path')").fetchone() == ('"$user", public',)
        settings = dict(
            one.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('server_version_num', 'search_path')"
            ).fetchall()
        )
        assert settings == {"server_version_num": "150000", "search_path": ""}
        with pytest.raises(psycopg.errors.UndefinedObject):
            one.execute("ALTER TABLE t OWNER TO someone_else")
        one.execute("ALTER TABLE t OWNER TO ha")  # the one owner: nothing to change
