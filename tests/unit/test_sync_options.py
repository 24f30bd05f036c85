"""A read replica's options: where each file starts, and the delivery policies refused as incomplete."""

from __future__ import annotations

from pathlib import Path

import pytest

from sqlite_ha.errors import ConfigError
from sqlite_ha.replication.bootstrap import FileState
from sqlite_ha.sync.options import check_start, replica_options

NEW, RESUMING, FOREIGN = FileState(0, 0), FileState(41, 3), FileState(0, 2)
URL = {"replication-url": "nats://127.0.0.1:4222"}
ENV = {"HA_CLUSTER_SECRET": "x" * 32}


@pytest.mark.parametrize(
    ("policy", "state", "base"),
    [
        ("all", NEW, None),  # from the beginning, or the latest snapshot
        ("all", RESUMING, None),  # right after seq 41
        ("by_start_sequence=1", NEW, None),
        ("by_start_sequence=42", RESUMING, None),  # exactly where it resumes anyway
        ("by_start_sequence=7", RESUMING, None),  # before: nothing is applied twice, it resumes after 41
        ("by_start_sequence=100", FOREIGN, 99),  # a copy the user vouches for, complete up to 99
    ],
)
def test_starts_that_give_a_complete_replica(policy: str, state: FileState, base: int | None) -> None:
    assert check_start(policy, state, "r.db") == base


@pytest.mark.parametrize(
    ("policy", "state", "says"),
    [
        ("all", FOREIGN, "holds tables but was never a replica"),
        ("by_start_sequence=43", RESUMING, "would skip seq 42 to 42"),
        ("by_start_sequence=2", NEW, "a new replica: starting at seq 2"),
        ("new", NEW, "only what is published from now on"),
        ("last", RESUMING, "resumes right after seq 41"),
        ("new", FOREIGN, "by_start_sequence=N"),
        ("by_start_time=2026-01-01 00:00:00", NEW, "only what was published after that time"),
    ],
)
def test_starts_that_would_lack_change_sets_are_refused(policy: str, state: FileState, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        check_start(policy, state, "r.db")


def test_targets(tmp_path: Path) -> None:
    one = replica_options(tmp_path / "app.db", settings=URL, env=ENV)
    assert [(s.id, s.path) for s in one.databases] == [("app.db", str(tmp_path / "app.db"))]
    assert not one.durable
    assert one.config.name.startswith("sync-")
    assert one.config.nats_port == 0
    assert one.config.replication_policy == "all"
    renamed = replica_options(tmp_path / "copy.db", databases=["app.db"], durable="r1", settings=URL, env=ENV)
    assert [(s.id, s.path) for s in renamed.databases] == [("app.db", str(tmp_path / "copy.db"))]
    assert renamed.durable
    assert renamed.config.name == "r1"
    several = replica_options(tmp_path, databases=["a.db", "b.db"], settings=URL, env=ENV)
    assert [s.path for s in several.databases] == [str(tmp_path / "a.db"), str(tmp_path / "b.db")]
    with pytest.raises(ConfigError, match="name the database"):
        replica_options(tmp_path, settings=URL, env=ENV)
    with pytest.raises(ConfigError, match="names a database twice"):
        replica_options(tmp_path, databases=["a.db", "a.db"], settings=URL, env=ENV)
    with pytest.raises(ConfigError, match=r"directory .* does not exist"):
        replica_options(tmp_path / "no" / "app.db", settings=URL, env=ENV)


def test_only_the_settings_of_a_replica_are_read(tmp_path: Path) -> None:
    env = {**ENV, "HA_REPLICATION_URL": "nats://h:4222", "HA_LEADER_STATIC": "http://w:8080", "HA_PORT": "1"}
    options = replica_options(tmp_path / "app.db", env=env)
    assert options.config.replication_url == "nats://h:4222"
    assert options.config.writer_mode == "leaderless"  # a server's variable does not make it a writer
    with pytest.raises(ConfigError, match="--port: is not a setting of a read replica"):
        replica_options(tmp_path / "app.db", settings={**URL, "port": "1"}, env=ENV)
