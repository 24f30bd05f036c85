"""threadsafety = 2: threads share the module and connections. Many threads writing through one connection
and through connections of their own lose nothing and see every committed write."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import sqlite_ha

THREADS = 8
WRITES = 40


def test_threads_sharing_one_connection_in_autocommit(dsn: str) -> None:
    conn = sqlite_ha.connect(dsn, isolation_level=None)
    conn.execute("CREATE TABLE t (thread, i)")

    def work(n: int) -> None:
        for i in range(WRITES):
            conn.execute("INSERT INTO t VALUES (?, ?)", (n, i))

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(work, range(THREADS)))
    assert conn.execute("SELECT count(*), count(DISTINCT thread) FROM t").fetchone() == (
        THREADS * WRITES,
        THREADS,
    )


def test_threads_with_their_own_connections_and_transactions(dsn: str) -> None:
    setup = sqlite_ha.connect(dsn)
    setup.execute("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)")
    setup.execute("INSERT INTO counter VALUES (1, 0)")
    setup.commit()
    errors: list[BaseException] = []

    def work() -> None:
        conn = sqlite_ha.connect(dsn, timeout=30)
        try:
            for _ in range(WRITES):
                with conn:  # read-modify-write inside one transaction: no lost update
                    (n,) = conn.execute("UPDATE counter SET n = n + 0 WHERE id = 1 RETURNING n").fetchone()
                    conn.execute("UPDATE counter SET n = ? WHERE id = 1", (n + 1,))
        except BaseException as e:
            errors.append(e)
        finally:
            conn.close()

    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert setup.execute("SELECT n FROM counter").fetchone() == (THREADS * WRITES,)


def test_connections_opened_concurrently_share_one_node(dsn: str) -> None:
    with ThreadPoolExecutor(THREADS) as pool:
        conns = list(pool.map(lambda _: sqlite_ha.connect(dsn), range(THREADS)))
    assert len({id(c.connector) for c in conns}) == 1
