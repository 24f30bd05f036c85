"""``min_seq`` past the end of the log is refused at once, on real nodes sharing a JetStream stream."""

from __future__ import annotations

import time

import psycopg
import pytest

from sqlite_ha.testing import NodeProcess, free_port
from tests.conftest import NodeFactory

PASSWORD = "secret"


def write(node: NodeProcess, sql: str, db: str = "app.db") -> int:
    return int(node.query({"sql": sql}, db=db)["seq"])


@pytest.fixture
def pair(node_factory: NodeFactory) -> tuple[NodeProcess, NodeProcess]:
    n1 = node_factory(args=["app.db", "other.db"], nats_port=None, name="node1")
    url = f"nats://127.0.0.1:{n1.nats_port}"
    pg_port = free_port()
    n2 = node_factory(
        args=[
            "app.db",
            "other.db",
            "--replication-url",
            url,
            "--replication-timeout",
            "3s",
            "--pg-port",
            str(pg_port),
            "--pg-pass",
            PASSWORD,
        ],
        name="node2",
    )
    n2.pg_port = pg_port  # type: ignore[attr-defined]
    return n1, n2


def test_min_seq_beyond_the_log_is_refused_at_once(pair: tuple[NodeProcess, NodeProcess]) -> None:
    n1, n2 = pair
    seq = write(n1, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    started = time.monotonic()
    resp = n2.request("POST", f"/query?min_seq={seq + 1000}", {"sql": "SELECT count(*) FROM t"})
    elapsed = time.monotonic() - started
    assert resp.status == 400, resp.body
    error = resp.json()["error"]
    assert error["code"] == "min_seq_beyond_log"
    assert error["min_seq"] == seq + 1000
    assert seq <= error["last_seq"] < seq + 1000
    assert str(error["last_seq"]) in error["message"]
    assert elapsed < 2.5, f"took {elapsed:.2f}s: it waited instead of asking the log"
    # the header form too, and on the node that took the write
    resp = n1.request("POST", "/query", {"sql": "SELECT 1"}, headers={"X-Min-Sequence": str(seq + 1000)})
    assert resp.status == 400, resp.body
    assert resp.json()["error"]["code"] == "min_seq_beyond_log"


def test_a_seq_just_acknowledged_elsewhere_is_waited_for(pair: tuple[NodeProcess, NodeProcess]) -> None:
    """A seq newer than anything the reading node has seen is not refused: the log has it."""
    n1, n2 = pair
    seq = write(n1, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    for i in range(20):
        seq = write(n1, f"INSERT INTO t VALUES ({i}, 'x')")
        resp = n2.request("POST", f"/query?min_seq={seq}", {"sql": "SELECT count(*) FROM t"})
        assert resp.status == 200, resp.body
        assert resp.json()["rows"] == [[i + 1]]


def test_a_seq_of_another_database_in_the_stream_waits_as_before(
    pair: tuple[NodeProcess, NodeProcess],
) -> None:
    """Positions are the stream's: a seq of a write to another database is within the log, so the read
    waits (in vain, as documented) and answers 504, not the 400 for a position past the log's end."""
    n1, n2 = pair
    first = write(n1, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    n2.query({"sql": "SELECT 1"})  # node2 serves app.db
    resp = n2.request("POST", f"/query?min_seq={first}", {"sql": "SELECT 1"})
    assert resp.status == 200, resp.body
    other = write(n1, "CREATE TABLE o(x)", db="other.db")
    assert other > first
    resp = n2.request("POST", f"/query?min_seq={other}", {"sql": "SELECT 1"})
    assert resp.status == 504, resp.body
    assert resp.json()["error"]["code"] == "stale_read"


def test_pg_min_seq_beyond_the_log_is_refused_at_once(pair: tuple[NodeProcess, NodeProcess]) -> None:
    n1, n2 = pair
    seq = write(n1, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    with psycopg.connect(
        host="127.0.0.1",
        port=n2.pg_port,  # type: ignore[attr-defined]
        user="ha",
        password=PASSWORD,
        dbname="app",
        autocommit=True,
    ) as conn:
        conn.execute(f"SET ha.min_seq = {seq}")
        assert conn.execute("SELECT count(*) FROM t").fetchall() == [(0,)]
        conn.execute(f"SET ha.min_seq = {seq + 1000}")
        started = time.monotonic()
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT count(*) FROM t")
        assert time.monotonic() - started < 2.5
        assert info.value.sqlstate == "22023"
        assert "beyond the end of the replication log" in str(info.value)


def test_strong_reads_see_every_write_acknowledged_before_them(pair: tuple[NodeProcess, NodeProcess]) -> None:
    """A write acknowledged on node1, then at once a strong read on node2 (HTTP ``?level=strong``, the
    header, PG ``SET ha.read_level``): the read sees it, every time, without the client passing a seq."""
    n1, n2 = pair
    write(n1, "CREATE TABLE s(id INTEGER PRIMARY KEY)")
    for i in range(30):
        write(n1, f"INSERT INTO s VALUES ({i})")
        if i % 2:
            resp = n2.request("POST", "/query?level=strong", {"sql": "SELECT max(id) FROM s"})
        else:
            headers = {"X-Read-Level": "linearizable"}
            resp = n2.request("POST", "/query", {"sql": "SELECT max(id) FROM s"}, headers=headers)
        assert resp.status == 200, resp.body
        assert resp.json()["rows"] == [[i]]
    resp = n2.request("POST", "/query?level=eventual", {"sql": "SELECT 1"})
    assert resp.status == 400
    assert "level must be none, strong or linearizable" in resp.json()["error"]["message"]
    conninfo = f"host=127.0.0.1 port={n2.pg_port} user=ha password={PASSWORD} dbname=app"  # type: ignore[attr-defined]
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SET ha.read_level = strong")
        assert conn.execute("SHOW ha.read_level").fetchone() == ("strong",)
        for i in range(30, 45):
            write(n1, f"INSERT INTO s VALUES ({i})")
            assert conn.execute("SELECT max(id) FROM s").fetchone() == (i,)
            assert conn.execute("SELECT max(id) FROM s WHERE id >= %s", (i,)).fetchone() == (i,)
        with pytest.raises(psycopg.errors.InvalidParameterValue):
            conn.execute("SET ha.read_level = eventual")
