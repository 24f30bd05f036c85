"""A cluster of real nodes in a writer mode (static, elected, pinned), for the writer-mode tests and
``bench/writer_modes.py``.

Built on the chaos suite (``sqlite_ha.chaos``): its ``Cluster`` starts the processes and inflicts the faults
(SIGKILL of a node with its nats-server, SIGSTOP/SIGCONT), its ``Client`` threads send writes and record every
answer in a ``History``, its checker waits for convergence and compares what the clients heard with what every
node holds. What this module adds: the writer-mode flags, one external nats-server the nodes share (so that
pausing or killing a node touches no NATS server), finding the writer from ``GET /status``, and the ``Chain``
workload, whose writes only a single serial writer can keep consistent.

Topologies: ``external``, one ``nats-server`` process started here and every node on it
(``--replication-url``); ``embedded``, every node runs its own embedded server, the servers routed into one
NATS cluster and the stream (and any bucket) with three replicas, as the chaos suite's ``raft3``.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal
from urllib.parse import urlsplit

from sqlite_ha.chaos.checker import Snapshot, caught_up, read
from sqlite_ha.chaos.client import REQUEST_TIMEOUT, Client
from sqlite_ha.chaos.cluster import DB, NATS_PASS, NATS_USER, Cluster, Topology
from sqlite_ha.chaos.history import History, Op, Outcome, classify
from sqlite_ha.chaos.workloads import Findings, Rows, Workload
from sqlite_ha.config import SETTINGS_BY_NAME
from sqlite_ha.natsd import find_nats_server
from sqlite_ha.testing import ChildProcess, NodeProcess, free_port, wait_for

Mode = Literal["static", "elected", "pinned"]
Nats = Literal["external", "embedded"]

HEARTBEAT = 0.2
LEASE = 1.0
SHORT_TIMING = ("--heartbeat-interval", f"{int(HEARTBEAT * 1000)}ms", "--lease-timeout", f"{LEASE:g}s")
"""Short lease settings, so that a test's failover takes about a second."""

DEFAULT_HEARTBEAT: float = SETTINGS_BY_NAME["heartbeat-interval"].default
DEFAULT_LEASE: float = SETTINGS_BY_NAME["lease-timeout"].default
"""The defaults of ``--heartbeat-interval`` and ``--lease-timeout``."""


def failover_bound(heartbeat: float, lease: float) -> float:
    """How long after the writer's death writes are accepted again, as docs/writer-modes.md states it: the
    dead writer's lease runs out (``lease`` after its last renewal, at most ``lease`` after the kill), a
    candidate notices at its next attempt (one ``heartbeat``), takes the lease and makes the log its own (one
    more ``heartbeat`` at most)."""
    return lease + 2 * heartbeat


# -------------------------------------------------------------------------------------- the nats-server
class ExternalNats(ChildProcess):
    """One ``nats-server`` with JetStream, the nodes' shared log, outside every node: a node paused or
    killed leaves it running. Credentials as the chaos cluster's nodes present them."""

    def __init__(self, workdir: Path) -> None:
        self.name = "nats-server"
        self.workdir = workdir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / "nats-server.log"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        command = [
            find_nats_server(),
            "-a",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-js",
            "-sd",
            str(self.workdir / "store"),
            "--user",
            NATS_USER,
            "--pass",
            NATS_PASS,
        ]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

        def listening() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.proc.returncode}:\n{self.logs()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.5):
                return True
            return False

        wait_for(listening, timeout, f"nats-server on port {self.port}", interval=0.05)


# -------------------------------------------------------------------------------------- the cluster
def mode_args(mode: Mode, nodes: list[NodeProcess], i: int) -> list[str]:
    """The writer-mode flags of node ``i``: the same mode on every node, as the docs say to run it."""
    node = nodes[i]
    if mode == "static":
        return ["--leader-static", nodes[0].url]
    if mode == "elected":
        return ["--leader-addr", node.url]
    peers = ",".join(n.url for j, n in enumerate(nodes) if j != i)
    return ["--local-target", node.url, "--peers", peers, "--node-id", node.name]


class WriterCluster:
    """``size`` nodes serving ``app.db`` in writer mode ``mode``; a context manager that stops everything.

    ``timing``: flags for the lease (``SHORT_TIMING`` by default, ``()`` for the defaults); ``extra``: more
    flags for every node."""

    def __init__(
        self,
        workdir: Path,
        mode: Mode,
        *,
        size: int = 3,
        nats: Nats = "external",
        timing: tuple[str, ...] = SHORT_TIMING,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.mode = mode
        self.workdir = workdir
        self.history = History()
        self.external: ExternalNats | None = None
        if nats == "embedded":
            self.cluster = Cluster(workdir, Topology.RAFT3, self.history, size=size)
        else:
            self.external = ExternalNats(workdir / "nats")
            self.cluster = Cluster(workdir, Topology.SHARED, self.history, size=size)
            for node in self.cluster.nodes:  # node1 too: no node runs a NATS server
                node.nats_port = 0
                node.args = [DB, "--nats-user", NATS_USER, "--nats-pass", NATS_PASS]
                node.args += ["--replication-url", self.external.url]
        self.nodes = self.cluster.nodes
        for i, node in enumerate(self.nodes):
            node.args += [*mode_args(mode, self.nodes, i), *timing, *extra]
        self.paused: set[str] = set()
        self.last_writer = self.nodes[0]
        self._workers = itertools.count()  # client numbers, unique in the cluster
        """The writer as ``writer()`` last found it: where clients that follow the writer send writes."""

    def __enter__(self) -> WriterCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            print(self.logs())
        self.close()

    def start(self, timeout: float = 90.0) -> None:
        if self.external is not None:
            self.external.start()
        self.cluster.start(timeout)

    def close(self) -> None:
        """Stop every process; the history stays in the work directory (``history.jsonl``)."""
        try:
            self.cluster.close()
        finally:
            if self.external is not None:
                self.external.stop()
            self.history.dump(self.workdir / "history.jsonl")

    def logs(self) -> str:
        parts = [f"----- log of {n.name} -----\n{n.logs()}" for n in self.nodes]
        if self.external is not None:
            parts.append(f"----- log of nats-server -----\n{self.external.logs()[-4000:]}")
        return "\n".join(parts)

    def node(self, name: str) -> NodeProcess:
        return self.cluster.node(name)

    def alive(self) -> list[NodeProcess]:
        """The nodes running and not paused: those that can answer."""
        return [n for n in self.nodes if n.pid is not None and n.name not in self.paused]

    # ------------------------------------------------------------------------------ faults
    def kill(self, node: NodeProcess) -> None:
        """SIGKILL the node (with its embedded nats-server, if it runs one)."""
        self.cluster.kill(node)

    def pause(self, node: NodeProcess) -> None:
        """SIGSTOP the node (with its embedded nats-server, if it runs one)."""
        self.paused.add(node.name)
        self.cluster.pause(node)

    def resume(self, node: NodeProcess) -> None:
        self.cluster.resume(node)
        self.paused.discard(node.name)

    # ------------------------------------------------------------------------------ the writer
    def status(self, node: NodeProcess, timeout: float = 2.0) -> dict[str, Any] | None:
        """The ``writer`` section of the node's ``GET /status`` (None if it does not answer)."""
        try:
            resp = node.request("GET", "/status", timeout=timeout)
        except OSError:
            return None
        if resp.status != 200:
            return None
        section = resp.json().get("writer")
        return section if isinstance(section, dict) else None

    def agreed_writer(self, among: list[NodeProcess] | None = None) -> NodeProcess | None:
        """The node that says it is the writer, if exactly one does and every other node of ``among`` (the
        nodes alive by default) names it; else None."""
        nodes = self.alive() if among is None else among
        sections = {n.name: self.status(n) for n in nodes}
        if any(s is None for s in sections.values()):
            return None
        writers = [n for n in nodes if (sections[n.name] or {}).get("role") == "writer"]
        if len(writers) != 1:
            return None
        url = writers[0].url.rstrip("/")
        for n in nodes:
            named = (sections[n.name] or {}).get("writer") or {}
            if str(named.get("url", "")).rstrip("/") != url:
                return None
        return writers[0]

    def writer(self, timeout: float = 30.0, *, other_than: NodeProcess | None = None) -> NodeProcess:
        """Wait until the nodes alive agree on one writer (not ``other_than``) and return it."""
        found: list[NodeProcess] = []

        def agreed() -> bool:
            w = self.agreed_writer()
            if w is None or w is other_than:
                return False
            found.append(w)
            return True

        what = "the nodes to agree on a writer" + (f" other than {other_than.name}" if other_than else "")
        try:
            wait_for(agreed, timeout, what, interval=0.05)
        except TimeoutError as e:
            states = {n.name: self.status(n) for n in self.alive()}
            raise TimeoutError(f"{e}; their writer sections: {states}") from None
        self.last_writer = found[-1]
        return found[-1]

    def settled_writer(self, hold: float, timeout: float = 60.0) -> NodeProcess:
        """The writer the nodes alive agree on, once they have agreed on it for ``hold`` seconds: after a node
        came back, which may take the role back (mode pinned: the lowest id alive writes)."""
        deadline = time.monotonic() + timeout
        last, since = None, time.monotonic()
        while time.monotonic() < deadline:
            writer = self.agreed_writer()
            if writer is not last:
                last, since = writer, time.monotonic()
            elif writer is not None and time.monotonic() - since >= hold:
                self.last_writer = writer
                return writer
            time.sleep(0.05)
        raise TimeoutError(f"the nodes did not agree on one writer for {hold:g}s within {timeout:g}s")

    # ------------------------------------------------------------------------------ data
    def create(self, workloads: list[Workload], via: NodeProcess) -> None:
        """Create the workloads' tables through ``via`` and wait until every node has them."""
        seq = int(via.query([{"sql": w.schema} for w in workloads])["seq"])
        for node in self.alive():
            node.query({"sql": "SELECT 1"}, db=f"{DB}?min_seq={seq}")

    def converge(self, workloads: list[Workload], timeout: float = 60.0) -> Snapshot:
        """Wait until every node has applied the whole log and holds the same rows; the rows then.
        Fails with each node's checksums if they do not converge in time."""
        last: list[Snapshot] = []

        def agree() -> bool:
            if not caught_up(self.cluster):
                return False
            last[:] = [read(self.cluster, workloads)]
            return not last[0].divergent()

        try:
            wait_for(agree, timeout, "every node to apply the whole log and agree", interval=0.2)
        except TimeoutError as e:
            detail = last[0].divergent() if last else "not caught up"
            raise AssertionError(f"{e}: {detail}") from None
        return last[0]

    def clients(
        self,
        workload: Workload,
        targets: list[NodeProcess] | None,
        per_node: int = 1,
        pause: float = 0.0,
    ) -> Load:
        """Writers (chaos ``Client`` threads) recording in ``history``: ``per_node`` for each node of
        ``targets``, or with ``targets`` None, ``per_node`` that send each write to the writer as this cluster
        last found it (``writer()``). Each client of the cluster gets its own number: write ids are made of
        node, workload, client number and count, and must never repeat."""
        routes: list[Callable[[], NodeProcess]] = (
            [lambda: self.last_writer] * per_node
            if targets is None
            else [lambda node=node: node for node in targets for _ in range(per_node)]  # type: ignore[misc]
        )
        workers = [next(self._workers) for _ in routes]
        return Load(self.history, workload, routes, pause, workers)


REDIRECTS = 3
"""307s a client follows for one write (a follower in mode pinned answers 307 to the writer)."""


class RoutedClient(Client):
    """A chaos client whose every request goes to the node ``route`` names then (e.g. the last writer), that
    follows a 307 to the writer with the same method and body as HTTP clients do."""

    def __init__(self, *, route: Callable[[], NodeProcess], **kwargs: Any) -> None:
        node = route()
        super().__init__(node=node.name, host=node.host, port=node.port, **kwargs)
        self.route = route

    def send(self, write_id: str) -> Op:
        node = self.route()
        if (node.host, node.port) != (self.host, self.port):
            self._close()
            self.node, self.host, self.port = node.name, node.host, node.port
        body = json.dumps(self.workload.body(write_id, self.node)).encode()
        headers = {"Content-Type": "application/json"}
        start = time.time()
        conn, owned, path = self._connection(), False, "/query"
        try:
            for _ in range(REDIRECTS + 1):
                conn.request("POST", path, body=body, headers=headers)
                resp = conn.getresponse()
                raw, status, location = resp.read(), resp.status, resp.getheader("Location")
                if not owned and resp.getheader("Connection", "").lower() == "close":
                    self._close()
                if status != 307 or not location:
                    break
                if owned:
                    conn.close()
                target = urlsplit(location)
                conn = http.client.HTTPConnection(
                    target.hostname or "", target.port or 80, timeout=REQUEST_TIMEOUT
                )
                owned, path = True, target.path + (f"?{target.query}" if target.query else "")
        except ConnectionRefusedError as e:  # nothing reached a node: certainly not written
            self._close()
            return self._op(write_id, start, 0, Outcome.REFUSED, f"{type(e).__name__}: {e}")
        except (OSError, http.client.HTTPException) as e:  # sent, but no answer: it may have happened
            self._close()
            return self._op(write_id, start, 0, Outcome.UNKNOWN, f"{type(e).__name__}: {e}")
        finally:
            if owned:
                conn.close()
        answer: Any
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        outcome = classify(status, answer)  # 503 write_outcome_unknown: unknown, not refused
        seq = answer.get("seq") if isinstance(answer, dict) else None
        return self._op(
            write_id,
            start,
            status,
            outcome,
            raw[:600].decode(errors="replace"),
            seq=seq if isinstance(seq, int) else None,
            result=self.workload.note(write_id, answer),
        )


class Load:
    """Client threads writing until stopped (a context manager: started on entry, joined on exit)."""

    def __init__(
        self,
        history: History,
        workload: Workload,
        routes: list[Callable[[], NodeProcess]],
        pause: float,
        workers: list[int],
    ) -> None:
        self.stop_event = threading.Event()
        self.threads = [
            RoutedClient(
                route=route,
                workload=workload,
                worker=worker,
                history=history,
                stop=self.stop_event,
                pause=pause,
            )
            for route, worker in zip(routes, workers, strict=True)
        ]

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(REQUEST_TIMEOUT + 5)


def oks(history: History, *, after: float = 0.0, via: list[NodeProcess] | None = None) -> list[Op]:
    """The acknowledged writes (200 with seq) that started after ``after`` (wall clock), through ``via``."""
    names = None if via is None else {n.name for n in via}
    return [
        op
        for op in history.snapshot()
        if op.outcome is Outcome.OK and op.start > after and (names is None or op.node in names)
    ]


def wait_acknowledged(history: History, count: int, timeout: float, **kw: Any) -> list[Op]:
    """Wait until ``oks(history, **kw)`` holds ``count`` writes; those writes."""
    got: list[list[Op]] = [[]]

    def enough() -> bool:
        got[0] = oks(history, **kw)
        return len(got[0]) >= count

    wait_for(enough, timeout, f"{count} acknowledged writes", interval=0.02)
    return got[0]


# -------------------------------------------------------------------------------------- the workload
class Chain(Workload):
    """Each write appends the next link of one chain: ``n`` = the chain's length + 1, read inside the write.

    Only writes serialised by one writer keep it a chain: a second node committing meanwhile (a zombie
    writer whose lease ran out) reads a stale length and writes an ``n`` that another write took, and the log
    keeps one of the two rows (last writer wins), so an acknowledged write is lost: exactly what fencing must
    prevent. The check also requires the links 1..N without a hole or a duplicate on every node, and the
    acknowledged writes in the order of their ``seq``: one history, one order."""

    name = "chain"
    table = "chain"
    schema = "CREATE TABLE chain(n INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, node TEXT NOT NULL)"
    order_by = "n"

    def body(self, write_id: str, node: str) -> Any:
        return {
            "sql": "INSERT INTO chain(n, id, node) SELECT coalesce(max(n), 0) + 1, ?, ? FROM chain",
            "params": [write_id, node],
        }

    def note(self, write_id: str, answer: Any) -> Any:
        try:
            return int(answer["rows"][0][1])  # last_insert_id: the link's n
        except (KeyError, IndexError, TypeError, ValueError):
            return None

    def check(self, ops: list[Op], rows: dict[str, Rows]) -> Findings:
        findings = Findings()
        links = {node: {r[1]: r[0] for r in rs} for node, rs in rows.items()}  # id -> n
        for node, rs in rows.items():
            ns = [r[0] for r in rs]
            if ns != list(range(1, len(ns) + 1)):
                holes = sorted(set(range(1, max(ns, default=0) + 1)) - set(ns))[:10]
                findings.invalid.append(f"chain on {node}: not 1..{len(ns)}, missing links {holes}")
        for op in ops:
            where = {node: op.write_id in ids for node, ids in links.items()}
            absent = sorted(node for node, ok in where.items() if not ok)
            if op.outcome is Outcome.UNKNOWN:
                findings.unknown[
                    "absent" if len(absent) == len(where) else "present" if not absent else "some"
                ] += 1
            elif op.outcome in (Outcome.OK, Outcome.PENDING) and absent:
                findings.lost.append(
                    f"chain {op.write_id} ({op.status}, seq {op.seq}, via {op.node}) missing on {absent}"
                )
            elif op.outcome is Outcome.REFUSED and len(absent) < len(where):
                findings.phantom.append(
                    f"chain {op.write_id} (refused {op.status}: {op.body[:200]}) is in the chain"
                )
            if op.outcome is Outcome.OK and op.result is not None:
                for node, ids in links.items():
                    if op.write_id in ids and ids[op.write_id] != op.result:
                        findings.invalid.append(
                            f"chain {op.write_id}: answered link {op.result}, "
                            f"is link {ids[op.write_id]} on {node}"
                        )
        # one writer, one order: a write acknowledged with a later seq has a later link (writes committed
        # together share a seq)
        acked = sorted(
            (op.seq or 0, op.result) for op in ops if op.outcome is Outcome.OK and op.result is not None
        )
        order = [link for _, link in acked]
        if any(a >= b for a, b in itertools.pairwise(order)):
            findings.invalid.append(
                f"chain: the acknowledged links are not in the order of their seq: {acked[:40]}"
            )
        return findings


@dataclass(frozen=True, kw_only=True, repr=False)
class Verdict:
    """What a run found, for an assertion message that shows everything at once."""

    findings: Findings
    counts: Counter[str]

    @property
    def ok(self) -> bool:
        f = self.findings
        return not (f.lost or f.pending_lost or f.phantom or f.partial or f.invalid)

    def __str__(self) -> str:
        f = self.findings
        lines = [f"answers: {dict(self.counts)}; unknown outcomes: {dict(f.unknown)}"]
        for name in ("lost", "pending_lost", "phantom", "partial", "invalid"):
            items = getattr(f, name)
            if items:
                lines.append(f"{name} ({len(items)}):")
                lines += [f"  {item}" for item in items[:20]]
        return "\n".join(lines)

    __repr__ = __str__  # what pytest shows of an assertion's message


def verdict(history: History, workload: Workload, snap: Snapshot) -> Verdict:
    """Check every answer the clients heard against the rows every node holds."""
    ops = [op for op in history.snapshot() if op.workload == workload.name]
    findings = workload.check(ops, snap.tables[workload.table])
    for op in ops:
        if op.outcome is Outcome.ANOMALY:
            findings.invalid.append(f"{op.write_id} via {op.node}: answer {op.status} {op.body!r}")
    return Verdict(findings=findings, counts=Counter(f"{op.status} {op.outcome.value}" for op in ops))
