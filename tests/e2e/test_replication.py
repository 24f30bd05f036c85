"""A real three-node cluster: node1 runs the embedded NATS, node2 and node3 join it as in ``ha``."""

from __future__ import annotations

import asyncio
import base64
import os
import random
import threading
from typing import Any

import pytest

from sqlite_ha.replication.seal import Sealer
from sqlite_ha.security.keys import ClusterKeys
from sqlite_ha.testing import TEST_CLUSTER_SECRET, NodeProcess, nats_credentials, wait_for
from tests.conftest import NodeFactory


class Cluster:
    def __init__(self, nodes: list[NodeProcess]) -> None:
        self.nodes = nodes

    def rows(self, node: NodeProcess, sql: str, min_seq: int | None = None) -> list[list[Any]]:
        path = f"/query?min_seq={min_seq}" if min_seq else "/query"
        resp = node.request("POST", path, {"sql": sql})
        assert resp.status == 200, resp.body
        return resp.json()["rows"]  # type: ignore[no-any-return]

    def write(self, node: NodeProcess, sql: str, params: Any = None) -> int:
        body: dict[str, Any] = {"sql": sql}
        if params is not None:
            body["params"] = params
        resp = node.request("POST", "/query", body)
        assert resp.status == 200, resp.body
        seq = resp.json()["seq"]
        assert resp.headers["X-Sequence"] == str(seq)
        return int(seq)

    def converged(self, sql: str) -> bool:
        results = [self.rows(n, sql) for n in self.nodes]
        return all(r == results[0] for r in results)

    def wait_converged(self, sql: str, timeout: float = 30) -> list[list[Any]]:
        wait_for(lambda: self.converged(sql), timeout, f"all nodes to agree on {sql!r}", interval=0.1)
        return self.rows(self.nodes[0], sql)


@pytest.fixture
def cluster(node_factory: NodeFactory) -> Cluster:
    first = node_factory(args=["app.db"], nats_port=None, name="node1")
    url = f"nats://127.0.0.1:{first.nats_port}"
    others = [node_factory(args=["app.db", "--replication-url", url], name=f"node{i}") for i in (2, 3)]
    return Cluster([first, *others])


def test_write_anywhere_read_everywhere(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    seq = cluster.write(n1, "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT)")
    seq = (
        cluster.write(n2, "INSERT INTO users(name) VALUES (?)", ["from node2"])
        if cluster.rows(n2, "SELECT count(*) FROM sqlite_schema WHERE name = 'users'", min_seq=seq) == [[1]]
        else 0
    )
    assert seq > 0
    # read-your-writes on another node: min_seq waits until that node has applied the write
    assert cluster.rows(n3, "SELECT name FROM users", min_seq=seq) == [["from node2"]]
    seq3 = cluster.write(n3, "UPDATE users SET name = 'changed on node3'")
    assert seq3 > seq
    assert cluster.rows(n1, "SELECT name FROM users", min_seq=seq3) == [["changed on node3"]]
    status = n1.request("GET", "/status").json()["replication"]["databases"]["app.db"]
    assert status["applied_seq"] >= seq3
    assert status["lag_messages"] == 0


def test_values_are_identical_on_every_node(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    seq = cluster.write(n1, "CREATE TABLE v(id INTEGER PRIMARY KEY, i INTEGER, f REAL, t TEXT, b BLOB, n)")
    blob = bytes(range(256))
    cluster.rows(n2, "SELECT 1", min_seq=seq)
    seq = cluster.write(
        n2,
        "INSERT INTO v(i, f, t, b, n) VALUES (?, ?, ?, ?, ?)",
        [2**63 - 1, 0.1 + 0.2, "ü\u0000x", {"$blob": base64.b64encode(blob).decode()}, None],
    )
    seq = cluster.write(n2, "INSERT INTO v(i, f) VALUES (?, ?)", [-(2**63), {"$float": "-Infinity"}])
    expected = [
        [2**63 - 1, 0.30000000000000004, "ü\u0000x", {"$blob": base64.b64encode(blob).decode()}, None],
        [-(2**63), {"$float": "-Infinity"}, None, None, None],
    ]
    for node in (n1, n3):
        assert cluster.rows(node, "SELECT i, f, t, b, n FROM v ORDER BY id", min_seq=seq) == expected


def test_concurrent_writers_on_the_same_rows_converge(cluster: Cluster) -> None:
    n1 = cluster.nodes[0]
    seq = cluster.write(n1, "CREATE TABLE c(id INTEGER PRIMARY KEY, v TEXT, who TEXT)")
    for node in cluster.nodes:
        cluster.rows(node, "SELECT 1", min_seq=seq)
    errors: list[str] = []

    def writer(node: NodeProcess, seed: int) -> None:
        rnd = random.Random(seed)
        for i in range(60):
            key = rnd.randint(1, 5)
            op = rnd.random()
            if op < 0.6:
                sql = (
                    "INSERT INTO c(id, v, who) VALUES (?, ?, ?) "
                    "ON CONFLICT(id) DO UPDATE SET v = excluded.v, who = excluded.who"
                )
                params: list[Any] = [key, f"{node.name}-{i}", node.name]
            elif op < 0.8:
                sql, params = "UPDATE c SET v = v || '+' WHERE id = ?", [key]
            else:
                sql, params = "DELETE FROM c WHERE id = ?", [key]
            resp = node.request("POST", "/query", {"sql": sql, "params": params})
            if resp.status != 200:
                errors.append(f"{node.name}: {resp.status} {resp.body!r}")

    threads = [threading.Thread(target=writer, args=(n, i)) for i, n in enumerate(cluster.nodes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    cluster.wait_converged("SELECT id, v, who FROM c ORDER BY id")


def test_without_rowid_no_pk_and_triggers(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    cluster.write(n1, "CREATE TABLE w(k TEXT PRIMARY KEY, v) WITHOUT ROWID")
    cluster.write(n1, "CREATE TABLE np(x, y)")
    cluster.write(n1, "CREATE TABLE audit(msg TEXT)")
    seq = cluster.write(
        n1, "CREATE TRIGGER w_audit AFTER INSERT ON w BEGIN INSERT INTO audit VALUES ('w ' || new.k); END"
    )
    for node in cluster.nodes:
        cluster.rows(node, "SELECT 1", min_seq=seq)
    cluster.write(n2, "INSERT INTO w VALUES ('a', 1)")
    cluster.write(n3, "INSERT INTO w VALUES ('b', 2)")
    # the same rowid chosen on two nodes for two different rows must stay two rows
    cluster.write(n2, "INSERT INTO np VALUES ('from n2', 1)")
    cluster.write(n3, "INSERT INTO np VALUES ('from n3', 1)")
    assert cluster.wait_converged("SELECT k, v FROM w ORDER BY k") == [["a", 1], ["b", 2]]
    assert cluster.wait_converged("SELECT x, y FROM np ORDER BY x") == [["from n2", 1], ["from n3", 1]]
    # the trigger fired once, on the node that took each write: not again on the replicas
    assert cluster.wait_converged("SELECT msg FROM audit ORDER BY msg") == [["w a"], ["w b"]]
    seq = cluster.write(n1, "UPDATE np SET y = 2 WHERE x = 'from n3'")
    assert cluster.rows(n3, "SELECT x, y FROM np ORDER BY x", min_seq=seq) == [["from n2", 1], ["from n3", 2]]


def test_unique_clash_resolves_the_same_everywhere(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    seq = cluster.write(n1, "CREATE TABLE u(id INTEGER PRIMARY KEY, email TEXT UNIQUE)")
    for node in cluster.nodes:
        cluster.rows(node, "SELECT 1", min_seq=seq)
    clashes = 0
    for attempt in range(20):  # two nodes take the same email at the same instant
        barrier = threading.Barrier(2)
        statuses: dict[str, int] = {}

        def insert(
            node: NodeProcess,
            row_id: int,
            attempt: int = attempt,
            barrier: threading.Barrier = barrier,
            statuses: dict[str, int] = statuses,
        ) -> None:
            barrier.wait()
            resp = node.request(
                "POST",
                "/query",
                {"sql": "INSERT INTO u VALUES (?, ?)", "params": [row_id, f"user{attempt}@x"]},
            )
            statuses[node.name] = resp.status

        threads = [
            threading.Thread(target=insert, args=(n2, 2 * attempt + 1)),
            threading.Thread(target=insert, args=(n3, 2 * attempt + 2)),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        clashes += statuses == {"node2": 200, "node3": 200}
    assert clashes > 0, "no two writes raced: the test proved nothing"
    rows = cluster.wait_converged("SELECT id, email FROM u ORDER BY id")
    assert len({email for _, email in rows}) == len(rows) == 20  # one holder per email, everywhere
    # the row holding a clashed value is the newest; delete it and the hidden one comes back everywhere
    emails = {email: row_id for row_id, email in rows}
    holder = emails["user0@x"]
    seq = cluster.write(n1, "DELETE FROM u WHERE id = ?", [holder])
    after = cluster.rows(n1, "SELECT id FROM u WHERE email = 'user0@x'", min_seq=seq)
    assert after in ([], [[1 if holder == 2 else 2]])
    cluster.wait_converged("SELECT id, email FROM u ORDER BY id")


def test_poison_change_set_is_parked_and_the_rest_flows(cluster: Cluster) -> None:
    import nats

    n1, n2, _ = cluster.nodes
    cluster.write(n1, "CREATE TABLE p(id INTEGER PRIMARY KEY, v)")

    # Signed with the cluster's key, as a buggy node would publish them: poison that passes the MAC.
    sealer = Sealer(ClusterKeys.from_text(TEST_CLUSTER_SECRET))

    async def publish_garbage() -> None:
        nc = await nats.connect(f"nats://127.0.0.1:{n1.nats_port}", **nats_credentials())
        js = nc.jetstream()
        await js.publish("ha_replication.app_db", sealer.seal("app.db", b"{this is not a change set"))
        await js.publish(
            "ha_replication.app_db",
            sealer.seal(
                "app.db",
                b'{"v": 1, "node": "evil", "database": "app.db", "hlc": 5,'
                b' "changes": [{"operation": "INSERT", "table": "nope",'
                b' "columns": ["x"], "pk_columns": ["x"], "key": [1],'
                b' "new_values": [1]}]}',
            ),
        )
        await nc.close()

    asyncio.run(publish_garbage())
    seq = cluster.write(n2, "INSERT INTO p(v) VALUES ('after the poison')")
    for node in cluster.nodes:
        assert cluster.rows(node, "SELECT v FROM p", min_seq=seq) == [["after the poison"]]
        parked = node.request("GET", "/status").json()["replication"]["databases"]["app.db"]["parked"]
        assert parked.get("dead", 0) == 1, parked  # the unreadable one
        assert parked.get("waiting", 0) == 1, parked  # the one for a table that does not exist


def test_killed_node_converges_and_loses_no_acknowledged_write(cluster: Cluster) -> None:
    n1, n2, n3 = cluster.nodes
    seq = cluster.write(n1, "CREATE TABLE k(id INTEGER PRIMARY KEY, who TEXT)")
    for node in cluster.nodes:
        cluster.rows(node, "SELECT 1", min_seq=seq)
    acked: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()

    def writer(node: NodeProcess, base: int) -> None:
        i = 0
        while not stop.is_set() and i < 400:
            i += 1
            try:
                resp = node.request(
                    "POST",
                    "/query",
                    {"sql": "INSERT INTO k VALUES (?, ?)", "params": [base + i, node.name]},
                    timeout=5,
                )
            except OSError:
                continue
            if resp.status == 200:
                with lock:
                    acked.append(base + i)

    threads = [
        threading.Thread(target=writer, args=(n, b)) for n, b in ((n1, 0), (n2, 100_000), (n3, 200_000))
    ]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) > 50, 30, "writes to flow")
    n3.kill()
    wait_for(lambda: len(acked) > 150, 30, "writes to go on without node3")
    n3.start()
    stop.set()
    for t in threads:
        t.join()
    rows = cluster.wait_converged("SELECT id FROM k ORDER BY id", timeout=60)
    present = {r[0] for r in rows}
    missing = sorted(set(acked) - present)
    assert missing == [], f"{len(missing)} acknowledged writes missing"


def test_three_server_nats_cluster_survives_losing_one(node_factory: NodeFactory) -> None:
    """Every node runs its own embedded NATS server; the servers form one cluster and the stream has three
    replicas, so losing any one machine loses neither the log nor any acknowledged write."""
    import psutil

    from sqlite_ha.testing import free_port, nats_cluster_args

    cluster_ports = [free_port() for _ in range(3)]
    nodes = []
    for i in range(3):
        nodes.append(
            node_factory(
                args=[
                    "app.db",
                    *nats_cluster_args(cluster_ports, i),
                    "--nats-user",
                    "ha",
                    "--nats-pass",
                    "s3cret pass",
                ],
                nats_port=None,
                name=f"node{i + 1}",
                start=False,
            )
        )
    for node in nodes:
        node.start(wait_ready=False)
    for node in nodes:
        node.wait_ready(timeout=60)
    c = Cluster(nodes)
    seq = c.write(nodes[0], "CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
    for node in nodes:
        c.rows(node, "SELECT 1", min_seq=seq)
    acked: list[tuple[int, int]] = []  # (seq, id) of every write answered 200
    before = nodes[1].query({"sql": "INSERT INTO t(who) VALUES ('before')"})
    acked.append((before["seq"], before["rows"][0][1]))
    # kill node3's NATS server: the other two still have a quorum of the stream's replicas
    assert nodes[2].proc is not None
    nats_pid = next(p.pid for p in psutil.Process(nodes[2].proc.pid).children() if "nats-server" in p.name())
    psutil.Process(nats_pid).kill()

    def write_ok() -> bool:
        resp = nodes[0].request("POST", "/query", {"sql": "INSERT INTO t(who) VALUES ('after')"})
        if resp.status == 200:  # (a 202 is committed here and published later: not counted as acked)
            acked.append((resp.json()["seq"], resp.json()["rows"][0][1]))
            return True
        return False

    wait_for(write_ok, 30, "writes to be accepted again after losing one NATS server", interval=0.2)
    for _ in range(20):
        assert write_ok()
    final = max(seq for seq, _ in acked)
    for node in nodes[:2]:
        present = {r[0] for r in c.rows(node, "SELECT id FROM t", min_seq=final)}
        assert {row_id for _, row_id in acked} <= present
    assert "s3cret pass" not in nodes[0].logs()


INTERCEPTOR = """
class SkipSecrets:
    def before_apply(self, cs, conn):
        return any(ch.table == "secrets" for ch in cs.changes)

    def after_apply(self, cs, conn, error):
        conn.execute("INSERT INTO seen(node) VALUES (?)", (cs.node,))
"""


def test_cli_options_interceptor_ddl_sync_and_async(node_factory: NodeFactory, tmp_path: Any) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "myhooks.py").write_text(INTERCEPTOR)
    first = node_factory(args=["app.db"], nats_port=None, name="node1")
    url = f"nats://127.0.0.1:{first.nats_port}"
    second = node_factory(
        args=["app.db", "--replication-url", url, "-i", "myhooks:SkipSecrets", "--async-replication"],
        name="node2",
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))},
    )
    c = Cluster([first, second])
    for sql in ("CREATE TABLE seen(node TEXT)", "CREATE TABLE secrets(x)", "CREATE TABLE public(x)"):
        seq = c.write(first, sql)
    c.rows(second, "SELECT 1", min_seq=seq)
    c.write(first, "INSERT INTO secrets VALUES ('hidden')")
    seq = c.write(first, "INSERT INTO public VALUES ('shown')")
    assert c.rows(second, "SELECT x FROM public", min_seq=seq) == [["shown"]]
    assert c.rows(second, "SELECT x FROM secrets") == []  # skipped by the interceptor
    assert c.rows(second, "SELECT count(*) FROM seen") == [[4]]  # after_apply ran for the others
    # node2 answers writes after the local commit (no seq), and they still reach node1
    resp = second.request("POST", "/query", {"sql": "INSERT INTO public VALUES ('async')"})
    assert resp.status == 200
    assert "seq" not in resp.json()
    c.wait_converged("SELECT x FROM public ORDER BY x")
    # a node with --disable-ddl-sync keeps its schema changes to itself
    third = node_factory(args=["app.db", "--replication-url", url, "--disable-ddl-sync"], name="node3")
    c.rows(third, "SELECT 1", min_seq=seq)
    assert "seq" not in third.query({"sql": "CREATE TABLE local_only(x)"})  # nothing to replicate
    seq = c.write(third, "INSERT INTO public VALUES ('from node3')")
    assert c.rows(first, "SELECT count(*) FROM sqlite_schema WHERE name = 'local_only'", min_seq=seq) == [[0]]
    assert ["from node3"] in c.rows(first, "SELECT x FROM public")


def test_a_transaction_over_max_transaction_size_is_refused_before_commit(node_factory: NodeFactory) -> None:
    """A change set larger than one NATS message (max_payload, 8 MB for the embedded server) travels in
    chunks; one larger than --max-transaction-size is rolled back and the client told why."""
    node = node_factory(args=["app.db", "--max-transaction-size", "10MB"], nats_port=None)
    node.query({"sql": "CREATE TABLE t(b BLOB)"})
    too_large = "INSERT INTO t VALUES (zeroblob(9000000))"  # 12 MB as JSON
    resp = node.request("POST", "/query", {"sql": too_large})
    assert resp.status == 413, resp.body
    error = resp.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "rolled back" in error["message"]
    assert "--max-transaction-size" in error["hint"]
    assert node.query({"sql": "SELECT count(*) FROM t"})["rows"] == [[0]]
    fits = node.query({"sql": "INSERT INTO t VALUES (zeroblob(7000000))"})  # 9.3 MB: two chunks
    assert fits["seq"] > 0

    def app_status() -> dict[str, Any]:
        return dict(node.request("GET", "/status").json()["replication"]["databases"]["app.db"])

    wait_for(lambda: app_status()["outbox"] == 0, 10, "the outbox to empty")  # nothing stuck in it
    assert app_status()["publish_failures"] == 0
    assert app_status()["published_chunked"] == 1
