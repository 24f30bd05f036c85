"""A client thread: sends one workload's writes to one node, back to back, and records every answer."""

from __future__ import annotations

import http.client
import json
import threading
import time
from typing import Any

from sqlite_ha.chaos.history import History, Op, Outcome, classify
from sqlite_ha.chaos.workloads import Workload

REQUEST_TIMEOUT = 20.0
"""Longer than the node's ``--replication-timeout`` (15 s), after which a write answers 202."""


class Client(threading.Thread):
    """Writes until ``stop`` is set, pausing ``pause`` seconds between requests (longer after a refusal)."""

    def __init__(
        self,
        *,
        node: str,
        host: str,
        port: int,
        workload: Workload,
        worker: int,
        history: History,
        stop: threading.Event,
        pause: float,
        token: str = "",
    ) -> None:
        super().__init__(name=f"chaos-{node}-{workload.name}-{worker}", daemon=True)
        self.node = node
        self.host = host
        self.port = port
        self.workload = workload
        self.worker = worker
        self.history = history
        self.stop_event = stop
        self.pause = pause
        self.token = token
        self._conn: http.client.HTTPConnection | None = None

    def run(self) -> None:
        n = 0
        while not self.stop_event.is_set():
            n += 1
            op = self.send(f"{self.node}-{self.workload.name}{self.worker}-{n}")
            self.history.add(op)
            refused = op.status == 0 or op.outcome is Outcome.REFUSED
            self.stop_event.wait(max(self.pause, 0.2) if refused else self.pause)
        self._close()

    def send(self, write_id: str) -> Op:
        body = json.dumps(self.workload.body(write_id, self.node)).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        start = time.time()
        try:
            conn = self._connection()
            conn.request("POST", "/query", body=body, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            status = resp.status
            if resp.getheader("Connection", "").lower() == "close":
                self._close()
        except ConnectionRefusedError as e:  # nothing reached the node: certainly not written
            self._close()
            return self._op(write_id, start, 0, Outcome.REFUSED, f"{type(e).__name__}: {e}")
        except (OSError, http.client.HTTPException) as e:  # sent, but no answer: it may have happened
            self._close()
            return self._op(write_id, start, 0, Outcome.UNKNOWN, f"{type(e).__name__}: {e}")
        answer: Any
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = None
        seq = answer.get("seq") if isinstance(answer, dict) else None
        return self._op(
            write_id,
            start,
            status,
            classify(status, answer),
            raw[:600].decode(errors="replace"),
            seq=seq if isinstance(seq, int) else None,
            result=self.workload.note(write_id, answer),
        )

    def _op(self, write_id: str, start: float, status: int, outcome: Outcome, body: str, **kw: Any) -> Op:
        return Op(
            workload=self.workload.name,
            node=self.node,
            write_id=write_id,
            start=start,
            end=time.time(),
            status=status,
            outcome=outcome,
            body=body,
            **kw,
        )

    def _connection(self) -> http.client.HTTPConnection:
        if self._conn is None:
            self._conn = http.client.HTTPConnection(self.host, self.port, timeout=REQUEST_TIMEOUT)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
