"""COPY over the PostgreSQL wire protocol, with real clients against a real node: psql's \\copy, psycopg 3's
``cursor.copy`` (text and binary), asyncpg's copy functions, and libpq's extended-protocol COPY."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest
from psycopg import pq

from sqlite_ha.testing import NodeProcess, free_port
from tests.conftest import NodeFactory
from tests.e2e import test_pgwire as base

pg = base.pg  # the fixture: a node with the PostgreSQL port on
dsn = base.dsn
psql = base.psql

TABLE = (
    "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, score DOUBLE PRECISION, ok BOOLEAN, data BYTEA, "
    "at TIMESTAMPTZ)"
)


def copy_in(cur: psycopg.Cursor[Any], statement: str, rows: Iterable[Sequence[Any]]) -> None:
    """COPY FROM STDIN with psycopg, in text format."""
    with cur.copy(statement) as copy:
        for row in rows:
            copy.write_row(row)


def give_up(cur: psycopg.Cursor[Any]) -> None:
    """An exception inside psycopg's copy block: psycopg sends CopyFail."""
    with cur.copy("COPY t (id) FROM STDIN") as copy:
        copy.write_row((1,))
        raise RuntimeError("changed my mind")


def count(node: NodeProcess, table: str = "t") -> int:
    with psycopg.connect(dsn(node), autocommit=True) as conn:
        row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_psql_copy_csv_both_ways(pg: NodeProcess, tmp_path: Path) -> None:
    assert psql(pg, "-c", TABLE).returncode == 0
    source = tmp_path / "in.csv"
    source.write_text(
        "id,name,score,ok,data,at\n"
        '1,"comma, and ""quotes""",1.5,t,\\x0102,2026-01-02 03:04:05+00\n'
        '2,"two\nlines",,f,,\n'
        '3,"",-2,true,\\x,\n'
    )
    loaded = psql(pg, "-c", f"\\copy t FROM '{source}' WITH CSV HEADER")
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "COPY 3"
    out = psql(
        pg,
        "-A",
        "-t",
        "-c",
        "SELECT id, typeof(id), name, name IS NULL, score, typeof(score), ok, typeof(ok), hex(data), "
        "data IS NULL FROM t ORDER BY id",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:5] == [
        '1|integer|comma, and "quotes"|f|1.5|real|t|integer|0102|f',  # IS NULL: a boolean
        "2|integer|two",  # the newline inside the quoted field is data
        "lines|f||null|f|integer||t",
        "3|integer||f|-2|real|t|integer||f",  # -2.0 prints -2; \x: empty bytes
        "",
    ]
    target = tmp_path / "out.csv"
    dumped = psql(pg, "-c", f"\\copy t TO '{target}' CSV")
    assert dumped.returncode == 0, dumped.stderr
    assert dumped.stdout.strip() == "COPY 3"
    assert target.read_text() == (
        '1,"comma, and ""quotes""",1.5,t,\\x0102,2026-01-02 03:04:05+00\n'
        '2,"two\nlines",,f,,\n'
        '3,"",-2,t,\\x,\n'
    )
    text = tmp_path / "out.txt"
    query = psql(pg, "-c", f"\\copy (SELECT id, name FROM t WHERE id > 1 ORDER BY id) TO '{text}'")
    assert query.returncode == 0, query.stderr
    assert text.read_text() == "2\ttwo\\nlines\n3\t\n"


def test_psql_bad_row_names_its_line_and_writes_nothing(pg: NodeProcess, tmp_path: Path) -> None:
    assert psql(pg, "-c", TABLE).returncode == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("1,a\n2,b\nthree,c\n4,d\n")
    run = psql(pg, "-c", f"\\copy t (id, name) FROM '{bad}' CSV")
    assert run.returncode != 0
    assert "CONTEXT:  COPY t, line 3, column id" in run.stderr, run.stderr
    dup = tmp_path / "dup.csv"
    dup.write_text("id\tname\n1\ta\n2\tb\n1\tagain\n")
    run = psql(pg, "-c", f"\\copy t (id, name) FROM '{dup}' (FORMAT text, HEADER)")
    assert "UNIQUE constraint failed" in run.stderr, run.stderr
    assert "CONTEXT:  COPY t, line 4" in run.stderr, run.stderr
    assert count(pg) == 0
    # the server's own files (and programs) are off limits
    for sql in ("COPY t FROM '/etc/passwd'", "COPY t TO '/tmp/x'", "COPY t FROM PROGRAM 'id'"):
        refused = psql(pg, "-c", sql)
        assert refused.returncode != 0
        assert "is not allowed: the server reads and writes no files" in refused.stderr, refused.stderr
    with (
        psycopg.connect(dsn(pg), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("COPY t FROM '/etc/passwd'")


def test_psycopg_copy_text_and_binary(pg: NodeProcess) -> None:
    at = dt.datetime(2026, 3, 4, 5, 6, 7, tzinfo=dt.UTC)
    rows = [
        (1, "tab\tnewline\nbackslash\\", 0.25, True, b"\x00\xff\\", at),
        (2, None, None, False, None, None),
        (3, "", -1.0, None, b"", None),
    ]
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        conn.execute(TABLE)
        cur = conn.cursor()
        with cur.copy("COPY t (id, name, score, ok, data, at) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        assert cur.rowcount == 3
        got = conn.execute("SELECT id, name, score, ok, data, at FROM t ORDER BY id").fetchall()
        assert got == rows
        with cur.copy("COPY t TO STDOUT") as copy:
            copy.set_types(["int8", "text", "float8", "bool", "bytea", "timestamptz"])
            assert list(copy.rows()) == rows
        with cur.copy("COPY (SELECT id, name FROM t ORDER BY id) TO STDOUT (FORMAT csv, HEADER)") as copy:
            assert b"".join(copy) == b'id,name\n1,"tab\tnewline\nbackslash\\"\n2,\n3,""\n'
        # binary format both ways, as psycopg writes it with set_types
        conn.execute("DELETE FROM t")
        with cur.copy("COPY t (id, name, score, ok, data, at) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "float8", "bool", "bytea", "timestamptz"])
            for row in rows:
                copy.write_row(row)
        assert conn.execute("SELECT id, name, score, ok, data, at FROM t ORDER BY id").fetchall() == rows
        with cur.copy("COPY t (id, name, data) TO STDOUT (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "bytea"])
            assert list(copy.rows()) == [(r[0], r[1], r[4]) for r in rows]
        # many rows: written in chunks within one transaction
        conn.execute("DELETE FROM t")
        with cur.copy("COPY t (id, name) FROM STDIN") as copy:
            for i in range(5000):
                copy.write_row((i, f"row {i}"))
        assert count(pg) == 5000
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_psycopg_copy_failures_write_nothing(pg: NodeProcess) -> None:
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        conn.execute(TABLE)
        cur = conn.cursor()
        # the client gives up (CopyFail)
        with pytest.raises(RuntimeError, match="changed my mind"):
            give_up(cur)
        assert count(pg) == 0
        # a bad value after enough rows for several chunks: they are all rolled back
        many: list[tuple[Any, str]] = [(i, "x") for i in range(4500)]
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as bad:
            copy_in(cur, "COPY t (id, name) FROM STDIN", [*many, ("oops", "x")])
        assert bad.value.diag.context == 'COPY t, line 4501, column id: "oops"'
        assert count(pg) == 0
        # a constraint: the mapped SQLSTATE and the line
        with pytest.raises(psycopg.errors.UniqueViolation) as dup:
            copy_in(cur, "COPY t (id) FROM STDIN", [(1,), (2,), (1,)])
        assert dup.value.diag.context == "COPY t, line 3"
        assert count(pg) == 0
        with pytest.raises(psycopg.errors.UndefinedTable), cur.copy("COPY nope FROM STDIN"):
            pass
        assert conn.execute("SELECT 2").fetchone() == (2,)  # the session goes on

    # inside a transaction block: the rows are the block's; a failed COPY fails the block
    with psycopg.connect(dsn(pg)) as conn:
        cur = conn.cursor()
        with cur.copy("COPY t (id, name) FROM STDIN") as copy:
            copy.write_row((10, "in block"))
        cur.execute("INSERT INTO t (id, name) VALUES (11, 'after')")
        assert count(pg) == 0  # not committed yet
        conn.commit()
        assert count(pg) == 2
        with pytest.raises(psycopg.errors.UniqueViolation):
            copy_in(cur, "COPY t (id) FROM STDIN", [(12,), (10,)])
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            cur.execute("SELECT 1")
        conn.rollback()
        assert cur.execute("SELECT count(*) FROM t").fetchone() == (2,)


def test_libpq_extended_protocol_copy(pg: NodeProcess) -> None:
    """COPY sent with Parse/Bind/Execute/Sync (PQsendQueryParams): the Sync libpq sends right after Execute
    is ignored during COPY, and after an error the server skips to the Sync that follows CopyDone."""
    assert psql(pg, "-c", TABLE).returncode == 0
    pgconn = pq.PGconn.connect(dsn(pg).encode())
    try:
        assert pgconn.status == pq.ConnStatus.OK, pgconn.error_message
        for data, expect in ((b"1\ta\n2\tb\n", pq.ExecStatus.COMMAND_OK), (b"3\tc\nx\td\n", None)):
            pgconn.send_query_params(b"COPY t (id, name) FROM STDIN", None)
            result = pgconn.get_result()
            assert result is not None
            assert result.status == pq.ExecStatus.COPY_IN, result.error_message
            pgconn.put_copy_data(data)
            pgconn.put_copy_end()
            result = pgconn.get_result()
            assert result is not None
            if expect is None:
                assert result.status == pq.ExecStatus.FATAL_ERROR
                assert result.error_field(pq.DiagnosticField.SQLSTATE) == b"22P02"
            else:
                assert result.status == expect, result.error_message
                assert result.command_status == b"COPY 2"
            assert pgconn.get_result() is None
    finally:
        pgconn.finish()
    with psycopg.connect(dsn(pg), autocommit=True) as conn:
        assert conn.execute("SELECT id, name FROM t ORDER BY id").fetchall() == [(1, "a"), (2, "b")]


def test_asyncpg_copy(pg: NodeProcess, tmp_path: Path) -> None:
    async def body() -> None:
        conn = await asyncpg.connect(
            host="127.0.0.1",
            port=pg.pg_port,  # type: ignore[attr-defined]
            user="ha",
            password=base.PASSWORD,
            database="app",
        )
        try:
            await conn.execute(TABLE)
            at = dt.datetime(2026, 5, 6, 7, 8, 9, tzinfo=dt.UTC)
            records = [(1, "one", 1.5, True, b"\x01", at), (2, None, None, None, None, None)]
            tag = await conn.copy_records_to_table("t", records=records)  # binary COPY
            assert tag == "COPY 2"
            got = await conn.fetch("SELECT id, name, score, ok, data, at FROM t ORDER BY id")
            assert [tuple(r) for r in got] == records
            tag = await conn.copy_records_to_table("t", records=[(3, "three")], columns=["id", "name"])
            assert tag == "COPY 1"
            out = tmp_path / "t.csv"
            tag = await conn.copy_from_table("t", columns=["id", "name"], output=str(out), format="csv")
            assert tag == "COPY 3"
            assert out.read_text() == "1,one\n2,\n3,three\n"
            await conn.execute("DELETE FROM t")
            tag = await conn.copy_to_table("t", source=str(out), columns=["id", "name"], format="csv")
            assert tag == "COPY 3"
            assert await conn.fetchval("SELECT name FROM t WHERE id = 3") == "three"
            with pytest.raises(asyncpg.exceptions.InvalidTextRepresentationError):
                await conn.copy_to_table("t", source=str(out), columns=["name", "id"], format="csv")
            assert await conn.fetchval("SELECT count(*) FROM t") == 3
        finally:
            await conn.close()

    asyncio.run(body())


def test_copy_size_limit(node_factory: NodeFactory) -> None:
    port = free_port()
    node = node_factory(
        args=["app.db", "--pg-port", str(port), "--pg-pass", base.PASSWORD, "--pg-max-copy-size", "1KB"],
        nats_port=None,
    )
    node.pg_port = port  # type: ignore[attr-defined]
    with psycopg.connect(dsn(node), autocommit=True) as conn:
        conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT)")
        cur = conn.cursor()
        with pytest.raises(psycopg.errors.ProgramLimitExceeded, match="exceeds the limit"):
            copy_in(cur, "COPY t FROM STDIN", [(i, "some text") for i in range(200)])
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (0,)
        with cur.copy("COPY t FROM STDIN") as copy:
            copy.write_row((1, "small"))
        assert conn.execute("SELECT count(*) FROM t").fetchone() == (1,)
