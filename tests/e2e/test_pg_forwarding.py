"""PostgreSQL clients on a node that is not the writer (writer mode static): writes run on the writer, through
a forwarded session, with the writer's results and errors; reads stay local and see the session's own writes.

One cluster for the module (three real node processes, every one started with ``--leader-static <node1>``,
and one nats-server): psycopg, asyncpg and psql connect to the followers. The last test stops the writer.
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
import psycopg
import pytest
from psycopg import errors

from sqlite_ha.natsd import NatsServer, NatsServerOptions
from sqlite_ha.security.keys import ClusterKeys
from sqlite_ha.security.node_auth import sign_session
from sqlite_ha.server.pgwire.wire import backend_parser as bp
from sqlite_ha.server.pgwire.wire import codec
from sqlite_ha.testing import TEST_CLUSTER_SECRET, NodeProcess, free_port, wait_for
from tests.e2e.test_https import make_tls

PASSWORD = "fwd pg pass"
WRITER_WAIT = 2.0


@dataclass
class Member:
    node: NodeProcess
    pg_port: int

    def dsn(self, **extra: str) -> str:
        parts = {"host": "127.0.0.1", "port": str(self.pg_port), "user": "ha", "password": PASSWORD}
        parts.update({"dbname": "app", **extra})
        return " ".join(f"{k}='{v}'" for k, v in parts.items())

    def connect(self, autocommit: bool = True) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(self.dsn(), autocommit=autocommit)

    def rows(self, sql: str) -> list[tuple[object, ...]]:
        with self.connect() as conn:
            return conn.execute(sql).fetchall()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Member]]:
    tmp = tmp_path_factory.mktemp("fwd")
    with asyncio.Runner() as runner:
        nats = NatsServer(NatsServerOptions(name="fwd", port=free_port(), store_dir=tmp / "nats"))
        runner.run(nats.start())
        members: list[Member] = []
        tls = make_tls(tmp / "tls")  # the writer offers TLS: forwarded sessions use it
        try:
            writer_port = free_port()
            for i in (1, 2, 3):
                pg_port = free_port()
                node = NodeProcess(
                    workdir=tmp / f"node{i}",
                    name=f"node{i}",
                    port=writer_port if i == 1 else 0,
                    args=[
                        "app.db",
                        *("--replication-url", nats.url),
                        *("--pg-port", str(pg_port), "--pg-pass", PASSWORD),
                        *("--leader-static", f"http://127.0.0.1:{writer_port}"),
                        *("--writer-wait", f"{WRITER_WAIT:g}s"),
                        *(("--pg-cert", str(tls.cert), "--pg-key", str(tls.key)) if i == 1 else ()),
                    ],
                )
                members.append(Member(node, pg_port))
                node.start()
            with members[1].connect() as conn:  # DDL through a follower too
                conn.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT UNIQUE, n BIGINT)")
            yield members
        finally:
            for m in members:
                m.node.stop()
            runner.run(nats.stop())


def forwarding(member: Member) -> dict[str, int]:
    """The node's counters of forwarded PostgreSQL sessions (``GET /status``)."""
    counters: dict[str, int] = member.node.request("GET", "/status").json()["connections"]["pg"]["forwarding"]
    return counters


def everywhere(cluster: list[Member], sql: str, expected: list[tuple[object, ...]]) -> None:
    for m in cluster:
        wait_for(lambda m=m: m.rows(sql) == expected, 15, f"{sql} on {m.node.name} to give {expected}")  # type: ignore[misc]


def test_autocommit_write_through_a_follower_lands_once_and_is_read_back(cluster: list[Member]) -> None:
    follower = cluster[1]
    before = forwarding(follower)["forwarded"]
    with follower.connect() as conn:
        returned = conn.execute("INSERT INTO t(v, n) VALUES ('auto', 1) RETURNING id, v").fetchall()
        assert len(returned) == 1
        assert returned[0][1] == "auto"
        # read-your-writes: the same session's next read is local and sees it at once
        assert conn.execute("SELECT v, n FROM t WHERE v = 'auto'").fetchall() == [("auto", 1)]
        assert conn.execute("UPDATE t SET n = n + 1 WHERE v = 'auto'").rowcount == 1
        assert conn.execute("SELECT n FROM t WHERE v = 'auto'").fetchone() == (2,)
    everywhere(cluster, "SELECT v, n FROM t WHERE v = 'auto'", [("auto", 2)])
    assert forwarding(follower)["forwarded"] == before + 2  # the INSERT and the UPDATE ran on the writer
    assert forwarding(cluster[0])["accepted"] >= 1
    assert forwarding(cluster[0])["forwarded"] == 0


def test_transaction_block_runs_on_the_writer_atomically(cluster: list[Member]) -> None:
    follower = cluster[2]
    with follower.connect(autocommit=False) as conn:
        assert conn.execute("SELECT count(*) FROM t WHERE v LIKE 'tx-%'").fetchone() == (0,)  # local read
        conn.execute("INSERT INTO t(v, n) VALUES ('tx-1', 1)")
        conn.execute("INSERT INTO t(v, n) VALUES (%s, %s)", ("tx-2", 2))
        # inside the block, after its first write: it reads its own writes (on the writer)
        mine = conn.execute("SELECT v FROM t WHERE v LIKE 'tx-%' ORDER BY v").fetchall()
        assert mine == [("tx-1",), ("tx-2",)]
        assert cluster[0].rows("SELECT count(*) FROM t WHERE v LIKE 'tx-%'") == [(0,)]  # not committed yet
        conn.commit()
        assert conn.execute("SELECT count(*) FROM t WHERE v LIKE 'tx-%'").fetchone() == (2,)
        conn.commit()
    everywhere(cluster, "SELECT v, n FROM t WHERE v LIKE 'tx-%' ORDER BY v", [("tx-1", 1), ("tx-2", 2)])
    assert forwarding(follower)["forwarded"] >= 1

    with follower.connect(autocommit=False) as conn:  # a rolled back block leaves nothing
        conn.execute("INSERT INTO t(v, n) VALUES ('tx-gone', 1)")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM t WHERE v = 'tx-gone'").fetchone() == (0,)
    assert cluster[0].rows("SELECT count(*) FROM t WHERE v = 'tx-gone'") == [(0,)]


def test_error_in_a_forwarded_block_is_the_writers_and_aborts_the_block(cluster: list[Member]) -> None:
    follower = cluster[1]
    with follower.connect() as conn:
        conn.execute("INSERT INTO t(v, n) VALUES ('dup', 1)")
    with follower.connect(autocommit=False) as conn:
        conn.execute("INSERT INTO t(v, n) VALUES ('dup-block', 1)")
        with pytest.raises(errors.UniqueViolation) as raised:
            conn.execute("INSERT INTO t(v, n) VALUES ('dup', 2)")
        assert raised.value.sqlstate == "23505"
        with pytest.raises(errors.InFailedSqlTransaction):
            conn.execute("SELECT 1")
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM t WHERE v = 'dup-block'").fetchone() == (0,)
    with follower.connect() as conn, pytest.raises(errors.UniqueViolation):  # and in autocommit
        conn.execute("INSERT INTO t(v, n) VALUES ('dup', 3)")
    everywhere(cluster, "SELECT n FROM t WHERE v LIKE 'dup%'", [(1,)])


def test_psycopg_prepared_statements_and_executemany(cluster: list[Member]) -> None:
    follower = cluster[2]
    with follower.connect() as conn:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO t(v, n) VALUES (%s, %s)", [(f"many-{i}", i) for i in range(20)])
        for i in range(3):  # prepared after a few executions (prepare_threshold), then reused
            conn.execute("UPDATE t SET n = n + 100 WHERE v = %s", (f"many-{i}",), prepare=True)
        assert conn.execute("SELECT count(*), sum(n) FROM t WHERE v LIKE 'many-%'").fetchone() == (20, 490)
        assert conn.execute("SELECT n FROM t WHERE v = %s", ("many-1",), prepare=True).fetchone() == (101,)
    everywhere(cluster, "SELECT count(*), sum(n) FROM t WHERE v LIKE 'many-%'", [(20, 490)])


def test_copy_from_stdin_through_a_follower(cluster: list[Member]) -> None:
    follower = cluster[1]
    with follower.connect() as conn:
        with conn.cursor().copy("COPY t(v, n) FROM STDIN") as copy:
            for i in range(50):
                copy.write_row((f"copy-{i}", i))
        assert conn.execute("SELECT count(*) FROM t WHERE v LIKE 'copy-%'").fetchone() == (50,)
    everywhere(cluster, "SELECT count(*), sum(n) FROM t WHERE v LIKE 'copy-%'", [(50, 1225)])


def test_asyncpg_prepared_binary_and_transaction(cluster: list[Member]) -> None:
    follower = cluster[1]

    async def run() -> None:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=follower.pg_port, user="ha", password=PASSWORD, database="app"
        )
        try:
            insert = await conn.prepare("INSERT INTO t(v, n) VALUES ($1, $2) RETURNING id, n")
            row = await insert.fetchrow("apg-1", 2**40)
            assert row is not None
            assert row["n"] == 2**40
            await conn.executemany("INSERT INTO t(v, n) VALUES ($1, $2)", [("apg-2", 2), ("apg-3", 3)])
            async with conn.transaction():
                await conn.execute("UPDATE t SET n = n * 10 WHERE v = $1", "apg-2")
                assert await conn.fetchval("SELECT n FROM t WHERE v = $1", "apg-2") == 20
            select = await conn.prepare("SELECT v, n FROM t WHERE v LIKE 'apg-%' ORDER BY v")
            assert [tuple(r) for r in await select.fetch()] == [("apg-1", 2**40), ("apg-2", 20), ("apg-3", 3)]
            with pytest.raises(asyncpg.UniqueViolationError):
                await insert.fetchrow("apg-1", 1)
        finally:
            await conn.close()

    asyncio.run(run())
    everywhere(cluster, "SELECT count(*) FROM t WHERE v LIKE 'apg-%'", [(3,)])


def test_psql_through_a_follower(cluster: list[Member]) -> None:
    follower = cluster[2]
    env = {**os.environ, "PGPASSWORD": PASSWORD, "PGCONNECT_TIMEOUT": "10"}
    base = ["psql", "-h", "127.0.0.1", "-p", str(follower.pg_port), "-U", "ha", "-d", "app", "-X", "-A", "-t"]
    done = subprocess.run(
        [*base, "-c", "INSERT INTO t(v, n) VALUES ('psql', 7) RETURNING n"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == "7"
    script = (
        "BEGIN;\nINSERT INTO t(v, n) VALUES ('psql-2', 8);\nSELECT n FROM t WHERE v = 'psql-2';\nCOMMIT;\n"
    )
    done = subprocess.run(
        [*base, "-v", "ON_ERROR_STOP=1"], input=script, capture_output=True, text=True, timeout=30, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "8" in done.stdout.split()
    everywhere(cluster, "SELECT n FROM t WHERE v LIKE 'psql%' ORDER BY n", [(7,), (8,)])


def test_block_whose_local_reads_went_stale_fails_with_40001(cluster: list[Member]) -> None:
    writer, follower = cluster[0], cluster[1]
    read = "SELECT n FROM t WHERE v = 'counter'"
    with follower.connect() as conn:
        conn.execute("INSERT INTO t(v, n) VALUES ('counter', 0)")
        conn.autocommit = False
        assert conn.execute(read).fetchone() == (0,)  # a local read, in the block (its own write, read back)
        with writer.connect() as other:  # meanwhile, on the writer
            other.execute("UPDATE t SET n = n + 1 WHERE v = 'counter'")
        with pytest.raises(errors.SerializationFailure):  # the block would overwrite what it did not see
            conn.execute("UPDATE t SET n = %s WHERE v = 'counter'", (0 + 1,))
        conn.rollback()
        wait_for(lambda: follower.rows(read) == [(1,)], 15, "the writer's update to reach the follower")
        (n,) = conn.execute(read).fetchone() or (0,)  # retried, it reads the new value and goes through
        assert n == 1
        conn.execute("UPDATE t SET n = %s WHERE v = 'counter'", (n + 1,))
        conn.commit()
    everywhere(cluster, read, [(2,)])


def test_cancel_reaches_the_statement_running_on_the_writer(cluster: list[Member]) -> None:
    follower = cluster[2]
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 100000000) "
        "SELECT count(*) FROM c"
    )
    with follower.connect(autocommit=False) as conn:
        conn.execute("INSERT INTO t(v, n) VALUES ('cancelled', 1)")  # the block now runs on the writer
        timer = threading.Timer(0.3, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(errors.QueryCanceled):
            conn.execute(slow)
        timer.join()
        assert time.monotonic() - started < 10
        conn.rollback()
    assert cluster[0].rows("SELECT count(*) FROM t WHERE v = 'cancelled'") == [(0,)]


def test_stale_block_with_asyncpg_prepared_reads_fails_with_40001(cluster: list[Member]) -> None:
    writer, follower = cluster[0], cluster[2]

    async def run() -> None:
        conn = await asyncpg.connect(
            host="127.0.0.1", port=follower.pg_port, user="ha", password=PASSWORD, database="app"
        )
        try:
            await conn.execute("INSERT INTO t(v, n) VALUES ('apg-counter', 0)")
            tx = conn.transaction()
            await tx.start()
            assert await conn.fetchval("SELECT n FROM t WHERE v = $1", "apg-counter") == 0  # extended, local
            with writer.connect() as other:
                other.execute("UPDATE t SET n = n + 1 WHERE v = 'apg-counter'")
            with pytest.raises(asyncpg.SerializationError):
                await conn.execute("UPDATE t SET n = $1 WHERE v = $2", 1, "apg-counter")
            await tx.rollback()
        finally:
            await conn.close()

    asyncio.run(run())
    everywhere(cluster, "SELECT n FROM t WHERE v = 'apg-counter'", [(1,)])


def _startup(port: int, params: dict[str, str]) -> tuple[socket.socket, bp.BackendParser]:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(bp.startup("ha", "app.db", **params))
    return sock, bp.BackendParser()


def _read(sock: socket.socket, parser: bp.BackendParser, until: str) -> list[tuple[str, bytes]]:
    got: list[tuple[str, bytes]] = []
    while not any(t in until for t, _ in got):
        data = sock.recv(65536)
        if not data:
            break
        parser.feed(data)
        got += parser.messages()
    return got


def test_forged_forwarded_session_is_refused(cluster: list[Member]) -> None:
    writer = cluster[0]
    keys = ClusterKeys.from_text(TEST_CLUSTER_SECRET)
    wrong = ClusterKeys.from_text("another cluster's secret 0123456789")

    def attempt(key_of: ClusterKeys, answer: str | None = None) -> tuple[str, dict[str, str], str]:
        sock, parser = _startup(writer.pg_port, {"ha.forwarded_by": "node2"})
        with sock:
            (_, body), *_ = _read(sock, parser, "R")
            code, salt = bp.decode_authentication(body)
            assert code == 5  # a challenge, not a password prompt
            answer = answer or sign_session(key_of.node_keys[0], "node2", "ha", "app.db", salt[:4])
            sock.sendall(bp.encode_frontend(codec.PasswordMessage(data=answer.encode() + b"\0")))
            got = _read(sock, parser, "EZ")
            errors_ = [bp.decode_error_response(b) for t, b in got if t == "E"]
            return got[-1][0], (errors_[0] if errors_ else {}), answer

    refused = forwarding(writer)["refused"]
    last, error, _ = attempt(wrong)
    assert last == "E"
    assert error["C"] == "28P01"
    last, error, _ = attempt(keys, answer="md5" + "0" * 32)  # a client's MD5 answer, say
    assert last == "E"
    assert error["C"] == "28P01"
    last, error, answer = attempt(keys)  # what a node answers is accepted …
    assert last == "Z", error
    last, error, _ = attempt(keys, answer=answer)  # … once: seen on the wire, it cannot be replayed
    assert last == "E"
    assert error["C"] == "28P01"
    assert forwarding(writer)["refused"] == refused + 3


def test_write_while_the_writer_is_down_fails_57P03_and_reads_go_on(cluster: list[Member]) -> None:
    writer, follower = cluster[0], cluster[1]
    blocked = cluster[2].connect(autocommit=False)
    blocked.execute("INSERT INTO t(v, n) VALUES ('orphan', 1)")  # a block open on the writer
    writer.node.stop()
    with pytest.raises(psycopg.OperationalError, match="connection to the writer was lost"):  # not silently
        blocked.execute("SELECT 1")
    blocked.close()
    with follower.connect() as conn:
        with pytest.raises(errors.CannotConnectNow) as raised:
            conn.execute("INSERT INTO t(v, n) VALUES ('nobody', 1)")
        assert raised.value.sqlstate == "57P03"
        assert conn.execute("SELECT count(*) FROM t WHERE v = 'auto'").fetchone() == (1,)
    assert follower.rows("SELECT count(*) FROM t WHERE v IN ('nobody', 'orphan')") == [(0,)]
