"""Driver fixtures: a fresh database file per test, and every connector the test made closed after it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sqlite_ha.driver import connector as connectors


@pytest.fixture
def dsn(tmp_path: Path) -> Iterator[str]:
    """A path to a new database file, served by an embedded node without replication."""
    yield str(tmp_path / "app.db")
    connectors.close_all()


@pytest.fixture(autouse=True)
def _close_connectors(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A DSN without replicationURL runs an embedded NATS server on natsPort (4222), as go-ha does; these
    # tests serve a local file unless they say otherwise (their natsPort or replicationURL wins).
    monkeypatch.setenv("HA_NATS_PORT", "0")
    yield
    connectors.close_all()
