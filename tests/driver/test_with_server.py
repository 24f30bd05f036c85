"""A driver-embedded app and a ``sqlite-ha serve`` node are one cluster: same change sets, stream and
subjects. The app joins the server's embedded NATS with the cluster's secret, as a node does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import sqlite_ha
from sqlite_ha.testing import TEST_CLUSTER_SECRET, NodeProcess, wait_for
from tests.conftest import NodeFactory


def server_rows(node: NodeProcess, sql: str, min_seq: int | None = None) -> list[list[Any]]:
    resp = node.request("POST", f"/query?min_seq={min_seq}" if min_seq else "/query", {"sql": sql})
    assert resp.status == 200, resp.body
    return resp.json()["rows"]  # type: ignore[no-any-return]


def test_driver_and_server_node_replicate_both_ways(
    node_factory: NodeFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = node_factory(args=["app.db"], nats_port=None, name="server")
    monkeypatch.setenv("HA_CLUSTER_SECRET", TEST_CLUSTER_SECRET)
    conn = sqlite_ha.connect(
        str(tmp_path / "app.db"), name="app", replicationURL=f"nats://127.0.0.1:{server.nats_port}"
    )
    with conn:
        conn.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
        conn.execute("INSERT INTO notes (id, body) VALUES (1, 'from the app')")
    assert conn.seq is not None
    assert server_rows(server, "SELECT id, body FROM notes", min_seq=conn.seq) == [[1, "from the app"]]

    answer = server.query({"sql": "INSERT INTO notes (id, body) VALUES (2, 'from the server')"})
    conn.connector.wait_applied(int(answer["seq"]), 15)
    assert conn.execute("SELECT id, body FROM notes ORDER BY id").fetchall() == [
        (1, "from the app"),
        (2, "from the server"),
    ]

    # the server sees the app's node among the log's readers
    def consumers() -> list[str]:
        return [c["name"] for c in server.request("GET", "/replications").json()["replications"]]

    wait_for(lambda: "app_app_db" in consumers(), 15, "the app's consumer to be listed by the server")
