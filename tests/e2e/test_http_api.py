"""The HTTP API of a real node process, spoken to over real HTTP."""

from __future__ import annotations

import base64
import sqlite3
import threading
import time
from pathlib import Path

import apsw
import pytest

from sqlite_ha.testing import NodeProcess, wait_for
from tests.conftest import NodeFactory


def sql(node: NodeProcess, text: str, params: object = None, db: str | None = None) -> dict:
    body: dict[str, object] = {"sql": text}
    if params is not None:
        body["params"] = params
    return node.query(body, db=db)  # type: ignore[no-any-return]


def error(
    node: NodeProcess, body: object, status: int, path: str = "/query", raw: bytes | None = None
) -> dict:
    resp = node.request("POST", path, body, raw=raw)
    assert resp.status == status, resp.body
    assert resp.headers["Content-Type"].startswith("application/json")
    err = resp.json()["error"]
    assert err["code"]
    assert err["message"]
    return err  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------------------------ start
def test_serve_creates_database_in_wal_mode(node: NodeProcess) -> None:
    sql(node, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    path = node.workdir / "app.db"
    assert path.exists()
    with path.open("rb") as f:
        header = f.read(20)
    assert header[:16] == b"SQLite format 3\x00"
    assert header[18:20] == b"\x02\x02"  # WAL read/write versions


def test_several_databases(node_factory: NodeFactory) -> None:
    node = node_factory(args=["a.db", "b.db"])
    sql(node, "CREATE TABLE t(x)", db="b.db")
    sql(node, "INSERT INTO t VALUES ('in b')", db="b.db")
    # the first database is the default one
    assert error(node, {"sql": "SELECT * FROM t"}, 400)["sqlite_code"] == "SQLITE_ERROR"
    assert sql(node, "SELECT x FROM t", db="b.db")["rows"] == [["in b"]]
    listed = node.request("GET", "/databases").json()["databases"]
    assert [d["id"] for d in listed] == ["a.db", "b.db"]
    assert error(node, {"sql": "SELECT 1"}, 404, path="/databases/nope.db")["code"] == "database_not_found"


def test_memory_loads_given_file(node_factory: NodeFactory, tmp_path: Path) -> None:
    workdir = tmp_path / "mem"
    workdir.mkdir()
    seed = sqlite3.connect(workdir / "seed.db")
    seed.execute("PRAGMA journal_mode=WAL")
    seed.execute("CREATE TABLE t(x)")
    seed.execute("INSERT INTO t VALUES (42)")
    seed.commit()
    seed.close()
    node = node_factory(args=["-m", "seed.db"], workdir=workdir)
    assert sql(node, "SELECT x FROM t")["rows"] == [[42]]
    sql(node, "INSERT INTO t VALUES (43)")
    assert sql(node, "SELECT count(*) FROM t")["rows"] == [[2]]
    # the file itself is left alone
    check = sqlite3.connect(workdir / "seed.db")
    assert check.execute("SELECT count(*) FROM t").fetchone() == (1,)
    check.close()


def test_create_and_delete_databases(node_factory: NodeFactory, tmp_path: Path) -> None:
    dbdir = tmp_path / "dbs"
    node = node_factory(args=["main.db", "--create-db-dir", str(dbdir)])
    resp = node.request("POST", "/databases", {"dsn": "extra.db"})
    assert resp.status == 201, resp.body
    assert resp.json()["id"] == "extra.db"
    assert node.request("POST", "/databases", {"dsn": "extra.db"}).status == 409
    assert node.request("POST", "/databases", {"dsn": "../escape.db"}).status == 400
    sql(node, "CREATE TABLE t(x)", db="extra.db")
    sql(node, "INSERT INTO t VALUES (1)", db="extra.db")
    # survives a restart: databases created over the API are opened again
    node.stop()
    node.start()
    assert sql(node, "SELECT x FROM t", db="extra.db")["rows"] == [[1]]
    # command-line databases cannot be deleted over the API; API-created ones can
    assert node.request("DELETE", "/databases/main.db").status == 409
    assert node.request("DELETE", "/databases/extra.db").status == 204
    assert not (dbdir / "extra.db").exists()
    assert node.request("POST", "/databases/extra.db", {"sql": "SELECT 1"}).status == 404


def test_create_database_disabled_without_dir(node: NodeProcess) -> None:
    resp = node.request("POST", "/databases", {"dsn": "x.db"})
    assert resp.status == 400
    assert "--create-db-dir" in resp.json()["error"]["hint"]


# ------------------------------------------------------------------------------------------------ queries
def test_single_and_list_shapes(node: NodeProcess) -> None:
    out = sql(node, "CREATE TABLE users(id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)")
    assert out["columns"] == ["rows_affected", "last_insert_id"]
    out = node.query(
        [
            {"sql": "INSERT INTO users(name) VALUES(:name)", "params": {"name": "new HA user"}},
            {"sql": "INSERT INTO users(name) VALUES(:name)", "params": {"name": "other"}},
            {"sql": "DELETE FROM users WHERE name = :name", "params": {"name": "new HA user"}},
            {"sql": "SELECT * FROM users"},
        ]
    )
    results = out["results"]
    assert results[0]["rows"] == [[1, 1]]
    assert results[1]["rows"] == [[1, 2]]
    assert results[2]["rows"][0][0] == 1
    assert results[3]["columns"] == ["id", "name"]
    assert results[3]["rows"] == [[2, "other"]]


def test_list_is_one_transaction(node: NodeProcess) -> None:
    sql(node, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    err = error(
        node,
        [
            {"sql": "INSERT INTO t(v) VALUES ('a')"},
            {"sql": "INSERT INTO t(v) VALUES ('b')"},
            {"sql": "INSERT INTO t(v) VALUES (NULL)"},
            {"sql": "INSERT INTO t(v) VALUES ('d')"},
        ],
        400,
    )
    assert err["sqlite_code"] == "SQLITE_CONSTRAINT_NOTNULL"
    assert err["index"] == 2
    assert sql(node, "SELECT count(*) FROM t")["rows"] == [[0]]
    # nothing was left open: the next write goes through at once
    sql(node, "INSERT INTO t(v) VALUES ('ok')")
    assert sql(node, "SELECT v FROM t")["rows"] == [["ok"]]


@pytest.mark.parametrize(
    ("text", "columns", "rows"),
    [
        ("WITH x(n) AS (SELECT 1 UNION ALL SELECT 2) SELECT n FROM x", ["n"], [[1], [2]]),
        ("VALUES (1, 'a'), (2, 'b')", ["column1", "column2"], [[1, "a"], [2, "b"]]),
        ("INSERT INTO t(v) VALUES ('r') RETURNING id, v", ["id", "v"], [[1, "r"]]),
        ("SELECT * FROM t WHERE 0", ["id", "v"], []),
    ],
)
def test_rows_decided_by_sqlite(node: NodeProcess, text: str, columns: list[str], rows: list) -> None:
    sql(node, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    out = sql(node, text)
    assert out["columns"] == columns
    assert out["rows"] == rows


def test_pragma_table_info_returns_rows(node: NodeProcess) -> None:
    sql(node, "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)")
    out = sql(node, "PRAGMA table_info(t)")
    assert out["columns"][:3] == ["cid", "name", "type"]
    assert [r[1] for r in out["rows"]] == ["id", "v"]


def test_lossless_values(node: NodeProcess) -> None:
    sql(node, "CREATE TABLE v(id INTEGER PRIMARY KEY, i INTEGER, f REAL, t TEXT, b BLOB, n)")
    blob = bytes(range(256))
    values = [2**63 - 1, 0.1 + 0.2, "ü \u0000 end", {"$blob": base64.b64encode(blob).decode()}, None]
    sql(node, "INSERT INTO v(i, f, t, b, n) VALUES (?, ?, ?, ?, ?)", values)
    sql(node, "INSERT INTO v(i, f) VALUES (?, ?)", [-(2**63), {"$float": "-Infinity"}])
    rows = sql(node, "SELECT i, f, t, b, n, typeof(b) FROM v ORDER BY id")["rows"]
    assert rows[0] == [
        2**63 - 1,
        0.30000000000000004,
        "ü \u0000 end",
        {"$blob": base64.b64encode(blob).decode()},
        None,
        "blob",
    ]
    assert rows[1][:2] == [-(2**63), {"$float": "-Infinity"}]
    # the bytes on disk are the bytes sent
    conn = apsw.Connection(str(node.workdir / "app.db"))
    assert conn.execute("SELECT b FROM v WHERE id = 1").fetchall() == [(blob,)]
    conn.close()


def test_positional_and_named_params(node: NodeProcess) -> None:
    sql(node, "CREATE TABLE p(a, b)")
    sql(node, "INSERT INTO p VALUES (?, ?)", [1, "x"])
    sql(node, "INSERT INTO p VALUES ($1, $2)", {"$1": 2, "$2": "y"})
    sql(node, "INSERT INTO p VALUES (:a, @b)", {"a": 3, "$b": "z"})
    assert sql(node, "SELECT a, b FROM p ORDER BY a")["rows"] == [[1, "x"], [2, "y"], [3, "z"]]
    err = error(node, {"sql": "SELECT ?", "params": {"$1": 1, "b": 2}}, 400)
    assert err["code"] == "invalid_params"
    assert "mixes" in err["message"]
    assert (
        "missing parameter 'b'" in error(node, {"sql": "SELECT :a, :b", "params": {"a": 1}}, 400)["message"]
    )
    assert error(node, {"sql": "SELECT ?", "params": [2**64]}, 400)["code"] in (
        "invalid_params",
        "invalid_json",
    )


# ------------------------------------------------------------------------------------------------ errors
def test_errors_are_json_with_status(node: NodeProcess) -> None:
    assert error(node, None, 400, raw=b'{"sql": ')["code"] == "invalid_json"
    assert error(node, None, 400, raw=b"\xff\xfe garbage")["code"] == "invalid_json"
    assert error(node, None, 400, raw=b"[" * 5000 + b"]" * 5000)["code"] == "invalid_json"
    assert error(node, {"sql": 1}, 400)["code"] == "bad_request"
    assert error(node, {"sql": "SELECT 1", "parms": []}, 400)["message"].startswith("unknown field")
    assert error(node, [], 400)["code"] == "bad_request"
    assert error(node, {"sql": "SELEC 1"}, 400)["sqlite_code"] == "SQLITE_ERROR"
    assert error(node, {"sql": "   "}, 400)["code"] == "bad_request"
    assert error(node, {"sql": "BEGIN"}, 400)["code"] == "statement_not_allowed"
    assert error(node, {"sql": "ATTACH '/etc/passwd' AS x"}, 400)["code"] == "statement_not_allowed"
    assert error(node, {"sql": "PRAGMA journal_mode=DELETE"}, 400)["code"] == "statement_not_allowed"
    resp = node.request("GET", "/no/such/route")
    assert resp.status == 404
    assert resp.json()["error"]["code"] == "not_found"
    resp = node.request("PUT", "/query", {"sql": "SELECT 1"})
    assert resp.status == 405
    # the node still serves
    assert sql(node, "SELECT 1 AS one")["rows"] == [[1]]


def test_constraint_errors_carry_sqlite_names(node: NodeProcess) -> None:
    sql(node, "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE)")
    sql(node, "INSERT INTO u(email) VALUES ('a@x')")
    err = error(node, {"sql": "INSERT INTO u(email) VALUES ('a@x')"}, 400)
    assert err["sqlite_code"] == "SQLITE_CONSTRAINT_UNIQUE"
    assert "UNIQUE" in err["message"]


def test_runaway_query_is_bounded(node: NodeProcess) -> None:
    err = error(
        node, {"sql": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c) SELECT x FROM c"}, 400
    )
    assert err["code"] in ("result_too_large", "query_timeout")
    assert sql(node, "SELECT 2")["rows"] == [[2]]


def test_oversized_body(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db", "--max-body-size", "1KB"])
    err = error(node, {"sql": "SELECT ?", "params": ["x" * 4096]}, 413)
    assert err["code"] == "payload_too_large"
    assert sql(node, "SELECT 1")["rows"] == [[1]]


# ------------------------------------------------------------------------------------------------ auth
def test_token_protects_all_but_health_and_docs(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db"], token="s3cret")
    for method, path in [
        ("POST", "/query"),
        ("POST", "/"),
        ("GET", "/download"),
        ("GET", "/databases"),
        ("GET", "/status"),
        ("POST", "/databases/app.db"),
        ("DELETE", "/databases/app.db"),
    ]:
        resp = node.request(method, path, {"sql": "SELECT 1"}, auth=False)
        assert resp.status == 401, (method, path)
        assert resp.json()["error"]["code"] == "unauthorized"
        wrong = node.request(method, path, {"sql": "SELECT 1"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status == 401, (method, path)
    for path in ["/healthz", "/readyz", "/openapi.yaml", "/docs"]:
        assert node.request("GET", path, auth=False).status == 200, path
    assert (
        node.request("POST", "/query", {"sql": "SELECT 1"}, headers={"Authorization": "s3cret"}).status == 200
    )
    assert node.query({"sql": "SELECT 1"})["rows"] == [[1]]
    assert "s3cret" not in node.logs()


# ------------------------------------------------------------------------------------------------ backup
def test_download_is_a_consistent_sqlite_file(node: NodeProcess, tmp_path: Path) -> None:
    sql(node, "CREATE TABLE t(id INTEGER PRIMARY KEY, v BLOB)")
    node.query([{"sql": "INSERT INTO t(v) VALUES (randomblob(1000))"}] * 500)
    stop = threading.Event()
    written = [0]

    def writer() -> None:
        while not stop.is_set():
            node.query([{"sql": "INSERT INTO t(v) VALUES (randomblob(1000))"}] * 10)
            written[0] += 10

    t = threading.Thread(target=writer)
    t.start()
    try:
        resp = node.request("GET", "/download")
    finally:
        stop.set()
        t.join()
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "application/vnd.sqlite3"
    assert "attachment" in resp.headers["Content-Disposition"]
    assert int(resp.headers["Content-Length"]) == len(resp.body)
    copy = tmp_path / "copy.db"
    copy.write_bytes(resp.body)
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    count = conn.execute("SELECT count(*) FROM t").fetchone()[0]
    conn.close()
    # a multiple of the transaction size: no transaction was cut in half
    assert count >= 500
    assert count % 10 == 0
    assert sql(node, "SELECT count(*) FROM t")["rows"] == [[500 + written[0]]]


def test_download_memory_database(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory(args=["-m", "mem.db"])
    sql(node, "CREATE TABLE t(x)")
    sql(node, "INSERT INTO t VALUES ('m')")
    resp = node.request("GET", "/databases/mem.db")
    assert resp.status == 200
    copy = tmp_path / "m.db"
    copy.write_bytes(resp.body)
    conn = sqlite3.connect(copy)
    assert conn.execute("SELECT x FROM t").fetchall() == [("m",)]
    conn.close()


# ------------------------------------------------------------------------------------------------ health
def test_health_readiness_status(node: NodeProcess) -> None:
    assert node.request("GET", "/healthz").json()["status"] == "ok"
    ready = node.request("GET", "/readyz").json()
    assert ready == {"ready": True, "checks": {"databases": True, "replication": True}}
    status = node.request("GET", "/status").json()
    assert status["node"] == "node1"
    assert status["databases"][0]["id"] == "app.db"
    assert status["event_loop"] == "uvloop"  # a dependency on this platform, and ``auto`` takes it


# --------------------------------------------------------------------------------------------- slow requests
COUNT_TO = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < {n}) SELECT count(*) FROM c"
)


def test_slow_query_does_not_stall_other_clients(node: NodeProcess) -> None:
    sql(node, "CREATE TABLE t(id INTEGER PRIMARY KEY, v)")
    sql(node, "INSERT INTO t(v) VALUES ('fast')")
    slow_result: list[dict] = []
    slow = threading.Thread(target=lambda: slow_result.append(sql(node, COUNT_TO.format(n=20_000_000))))
    slow.start()
    try:
        # wait until the node reports the request as moved to a worker thread
        wait_for(
            lambda: node.request("GET", "/status").json()["databases"][0]["slow"] == 1,
            20,
            "the slow query to move to a worker thread",
        )
        started = time.monotonic()
        for _ in range(20):
            assert sql(node, "SELECT v FROM t WHERE id = 1")["rows"] == [["fast"]]
            sql(node, "INSERT INTO t(v) VALUES ('w')")
        assert time.monotonic() - started < 5  # served while the slow query runs
        assert slow.is_alive(), "the slow query finished too early to prove anything"
    finally:
        slow.join()
    assert slow_result[0]["rows"] == [[20_000_000]]


def test_slow_write_moves_to_a_thread_and_commits(node: NodeProcess) -> None:
    sql(node, "CREATE TABLE big(id INTEGER PRIMARY KEY, v)")
    out = sql(node, "INSERT INTO big(v) " + COUNT_TO.format(n=300_000).replace("count(*)", "x"))
    assert out["rows"] == [[300_000, 300_000]]
    assert sql(node, "SELECT count(*) FROM big")["rows"] == [[300_000]]
    assert node.request("GET", "/status").json()["databases"][0]["slow"] >= 1


def test_query_timeout_rolls_back(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db", "--query-timeout", "500ms"])
    sql(node, "CREATE TABLE t(x)")
    started = time.monotonic()
    err = error(node, [{"sql": "INSERT INTO t VALUES (1)"}, {"sql": COUNT_TO.format(n=10**12)}], 400)
    assert err["code"] == "query_timeout"
    assert time.monotonic() - started < 5
    assert sql(node, "SELECT count(*) FROM t")["rows"] == [[0]]
