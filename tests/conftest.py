"""Shared fixtures: real node processes on free ports, stopped after each test, logs shown on failure."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sqlite_ha.testing import NodeProcess, free_port
from sqlite_ha.testing_pg import PostgresServer, available


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


NodeFactory = Callable[..., NodeProcess]


@pytest.fixture
def node_factory(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[NodeFactory]:
    """Start nodes with ``node_factory(args=[...], ...)``; all are stopped at the end of the test."""
    nodes: list[NodeProcess] = []

    def make(*, start: bool = True, **kwargs: Any) -> NodeProcess:
        name = kwargs.pop("name", f"node{len(nodes) + 1}")
        node = NodeProcess(workdir=kwargs.pop("workdir", tmp_path / name), name=name, **kwargs)
        nodes.append(node)
        if start:
            node.start()
        return node

    yield make
    failed = getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed
    errors: list[BaseException] = []
    for node in nodes:
        try:
            node.kill() if failed else node.stop()
        except Exception as e:  # a node that does not stop in time: the others must still be stopped
            node.kill()
            errors.append(e)
        if failed:
            print(f"\n----- log of {node.name} -----\n{node.logs()}")
    if errors:
        raise errors[0]


@pytest.fixture
def node(node_factory: NodeFactory) -> NodeProcess:
    """One node serving app.db, without NATS."""
    return node_factory(args=["app.db"])


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL 15 for the whole test run, to compare a node's answers with the real thing.

    Required, not optional: CI machines have it (Debian's postgresql-15); a run without it fails here with
    what is missing instead of skipping the comparisons.
    """
    if not available():
        pytest.fail(
            "PostgreSQL 15 binaries not found in /usr/lib/postgresql/15/bin (apt install postgresql-15)"
        )
    server = PostgresServer.in_temp_dir(free_port())
    server.init().start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.root.parent, ignore_errors=True)
