"""Driver options: every go-ha option name (seeds 001 and 004) in the DSN, as a keyword option and as its
``HA_*`` variable, read as the setting or plug-in it means, or refused by name; precedence keyword > DSN >
environment > default."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import pytest

from sqlite_ha.config.aliases import GO_HA_ENV, REFUSED
from sqlite_ha.db.dsn import parse_databases
from sqlite_ha.driver.options import GO_HA_OPTIONS, SEED_001_NAMES, DriverOptions, parse_options
from sqlite_ha.errors import ConfigError
from sqlite_ha.plugins import JSONLinesPublisher

NO_ENV: dict[str, str] = {}


def _attr(opts: DriverOptions, what: str) -> Any:
    """``config.x`` or ``plugins.x`` or ``database``."""
    holder, _, name = what.partition(".")
    if holder == "config":
        return getattr(opts.config, name)
    if holder == "plugins":
        return getattr(opts.plugins, name)
    if holder == "spec":
        return getattr(parse_databases(opts.config.databases, memory=False)[0], name)
    return getattr(opts, what)


# go-ha option -> (a value as text, what it sets, the expected value). One row per option of seed 004.
ACCEPTED: dict[str, tuple[str, str, Any]] = {
    "asyncPublisher": ("true", "plugins.publisher", "outbox"),
    "autoStart": ("false", "auto_start", False),
    "replicationID": ("shared.db", "database", "shared.db"),
    "deliverPolicy": ("last", "config.replication_policy", "last"),
    "disableSubscriber": ("true", "plugins.subscriber", False),
    "disablePublisher": ("true", "plugins.publisher", "none"),
    "disableDBSnapshotter": ("true", "plugins.snapshotter", False),
    "disableDDLSync": ("true", "config.disable_ddl_sync", True),
    "leaderProvider": ("dynamic:http://10.0.0.1:8000", "config.leader_addr", "http://10.0.0.1:8000"),
    "name": ("n7", "config.name", "n7"),
    "natsConfigFile": ("/etc/nats.conf", "config.nats_config", "/etc/nats.conf"),
    "natsName": ("s7", "config.nats_name", "s7"),
    "natsPort": ("4333", "config.nats_port", 4333),
    "natsStoreDir": ("/tmp/st", "config.nats_store_dir", "/tmp/st"),
    "publisherTimeout": ("5s", "config.replication_timeout", 5.0),
    "replicationStream": ("mystream", "config.replication_stream", "mystream"),
    "replicationURL": ("nats://10.0.0.1:4222", "config.replication_url", "nats://10.0.0.1:4222"),
    "replicas": ("3", "config.replicas", 3),
    "rowIdentify": ("rowid", "config.row_identify", "rowid"),
    "snapshotInterval": ("2m", "config.snapshot_interval", 120.0),
    "streamMaxAge": ("1h", "config.replication_max_age", 3600.0),
}
# go-ha options that cannot be honoured: what the refusal says.
REFUSALS = {
    "grpcPort": ("9090", "no gRPC server"),
    "grpcTimeout": ("5s", "no gRPC server"),
    "grpcToken": ("t", "--token or --auth-file"),
}
IGNORED = {"asyncPublisherOutboxDir": "/tmp/outbox"}
# A cluster secret is needed as soon as an external URL is given (as for a node).
BASE = {"clusterSecret": "s" * 32}


def test_the_tables_cover_every_option_of_seed_004() -> None:
    assert set(ACCEPTED) | set(REFUSALS) | set(IGNORED) == set(GO_HA_OPTIONS)
    assert set(SEED_001_NAMES) == {"cdcID", "disableCDCSubscriber", "disableCDCPublisher"}
    # the go-ha variables the server maps are the ones the driver maps (one table: config/aliases.py)
    assert set(GO_HA_ENV) <= set(GO_HA_OPTIONS.values())
    assert {v for v in REFUSED if v.startswith("HA_GRPC")} <= set(GO_HA_OPTIONS.values())


@pytest.mark.parametrize("option", sorted(ACCEPTED))
def test_every_go_ha_option_in_the_dsn(option: str) -> None:
    text, what, expected = ACCEPTED[option]
    opts = parse_options(f"file:app.db?{option}={text}&clusterSecret={'s' * 32}", env=NO_ENV)
    assert _attr(opts, what) == expected


@pytest.mark.parametrize("option", sorted(ACCEPTED))
def test_every_go_ha_option_as_its_environment_variable(option: str) -> None:
    text, what, expected = ACCEPTED[option]
    opts = parse_options("app.db", BASE, env={GO_HA_OPTIONS[option]: text})
    assert _attr(opts, what) == expected


@pytest.mark.parametrize("option", sorted(ACCEPTED))
def test_every_go_ha_option_as_a_keyword_in_camel_and_snake_case(option: str) -> None:
    text, what, expected = ACCEPTED[option]
    assert _attr(parse_options("app.db", {**BASE, option: text}, env=NO_ENV), what) == expected
    snake = "".join("_" + c.lower() if c.isupper() else c for c in option)
    snake = {"replication_u_r_l": "replication_url", "replication_i_d": "replication_id"}.get(snake, snake)
    snake = snake.replace("d_d_l", "ddl").replace("d_b_", "db_")
    assert _attr(parse_options("app.db", {**BASE, snake: text}, env=NO_ENV), what) == expected


@pytest.mark.parametrize(("old", "new"), sorted(SEED_001_NAMES.items()))
def test_seed_001_names(old: str, new: str) -> None:
    text, what, expected = {"cdcID": ("shared.db", "database", "shared.db")}.get(old, ACCEPTED[new])
    assert _attr(parse_options(f"app.db?{old}={text}", env=NO_ENV), what) == expected


@pytest.mark.parametrize("option", sorted(REFUSALS))
def test_refused_options_name_the_option_and_say_why(option: str) -> None:
    text, why = REFUSALS[option]
    for given, env in (({option: text}, NO_ENV), ({}, {GO_HA_OPTIONS[option]: text})):
        with pytest.raises(ConfigError) as refused:
            parse_options("app.db", given, env=env)
        assert refused.value.setting in (option, GO_HA_OPTIONS[option])
        assert why in refused.value.message
    with pytest.raises(ConfigError) as refused:
        parse_options(f"file:app.db?{option}={text}", env=NO_ENV)
    assert refused.value.setting == option
    assert "from DSN" in refused.value.message


def test_the_outbox_dir_is_accepted_and_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        parse_options("app.db?asyncPublisherOutboxDir=/tmp/x", env=NO_ENV)
    assert "asyncPublisherOutboxDir (from DSN) is ignored" in caplog.text
    assert "outbox inside the database file" in caplog.text


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ({"publisherTimeout": "soon"}, "is not a duration"),
        ({"natsPort": "99999"}, "not a port number"),
        ({"rowIdentify": "full"}, "'full' is not supported"),
        ({"replicas": "9"}, "out of range"),
        ({"autoStart": "maybe"}, "not a boolean"),
        ({"replicationID": "a/b"}, "not a usable database id"),
        ({"deliverPolicy": "sometimes"}, "not a delivery policy"),
        ({"leaderProvider": "elected:http://x:1"}, "static:URL or dynamic:URL"),
        ({"replicationURL": "http://x"}, "not a NATS URL"),
    ],
)
def test_bad_values_name_the_option_as_given(given: dict[str, str], words: str) -> None:
    (key,) = given
    with pytest.raises(ConfigError) as refused:
        parse_options("app.db", given, env=NO_ENV)
    assert refused.value.setting == key
    assert words in refused.value.message
    with pytest.raises(ConfigError) as refused:
        parse_options(f"app.db?{key}={given[key]}", env=NO_ENV)
    assert refused.value.setting == key
    assert refused.value.fields["source"] == "DSN"


def test_unknown_options_are_refused_with_the_closest_name() -> None:
    with pytest.raises(ConfigError) as refused:
        parse_options("app.db?replicationUrl2=x", env=NO_ENV)
    assert refused.value.setting == "replicationUrl2"
    assert "did you mean" in refused.value.message
    with pytest.raises(ConfigError) as refused:
        parse_options("app.db", {"pg_port": 5432}, env=NO_ENV)
    assert "no PostgreSQL" in refused.value.message


def test_precedence_keyword_over_dsn_over_environment_over_default() -> None:
    env = {"HA_PUBLISHER_TIMEOUT": "3s", "HA_AUTO_START": "false", "HA_REPLICATION_STREAM": "envstream"}
    opts = parse_options("app.db?publisherTimeout=4s&autoStart=true", {"publisher_timeout": 6}, env=env)
    assert opts.config.replication_timeout == 6.0  # keyword (a number: seconds)
    assert opts.auto_start is True  # DSN over environment
    assert opts.config.replication_stream == "envstream"  # environment over default
    assert opts.config.snapshot_interval == 60.0  # default
    # our own variable wins over go-ha's for the same setting, as for the server
    env2 = {"HA_PUBLISHER_TIMEOUT": "3s", "HA_REPLICATION_TIMEOUT": "2s"}
    assert parse_options("app.db", env=env2).config.replication_timeout == 2.0


def test_sqlite_parameters_go_to_the_database() -> None:
    opts = parse_options("file:data/app.db?_journal=WAL&_fk=1&_busy_timeout=2500&natsPort=0", env=NO_ENV)
    (spec,) = parse_databases(opts.config.databases, memory=False)
    assert (spec.path, spec.id, spec.foreign_keys, spec.busy_timeout) == ("data/app.db", "app.db", True, 2.5)
    (spec,) = parse_databases(
        parse_options("app.db?_fk=0", {"_fk": True}, env=NO_ENV).config.databases, memory=False
    )
    assert spec.foreign_keys is True  # a keyword over the DSN
    with pytest.raises(ConfigError) as refused:  # SQLite's parameters are checked as a node checks them
        parse_databases(parse_options("app.db?_journal=DELETE", env=NO_ENV).config.databases, memory=False)
    assert "always uses WAL" in refused.value.message


def test_go_ha_defaults_embedded_nats_at_4222_and_port_0_runs_alone() -> None:
    c = parse_options("app.db", env=NO_ENV).config
    assert (c.embedded_nats, c.nats_port, c.nats_url) == (True, 4222, "nats://127.0.0.1:4222")
    c = parse_options("app.db?natsPort=0", env=NO_ENV).config
    assert (c.embedded_nats, c.nats_url) == (False, "")
    c = parse_options("app.db?replicationURL=nats://h:4222", BASE, env=NO_ENV).config
    assert (c.embedded_nats, c.nats_url) == (False, "nats://h:4222")


def test_default_node_name_is_stable_and_differs_per_file(tmp_path: Path) -> None:
    a1 = parse_options(str(tmp_path / "a.db"), env=NO_ENV).config.name
    a2 = parse_options(str(tmp_path / "a.db"), env=NO_ENV).config.name
    b = parse_options(str(tmp_path / "b.db"), env=NO_ENV).config.name
    assert a1 == a2 != b
    assert parse_options("a.db", env={"HA_NAME": "fromenv"}).config.name == "fromenv"


def test_cluster_secret_as_a_node_takes_it(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("x" * 40 + "\n")
    secret.chmod(0o600)
    for opts in (
        parse_options("app.db?replicationURL=nats://h:1", {"cluster_secret_file": str(secret)}, env=NO_ENV),
        parse_options(f"app.db?replicationURL=nats://h:1&cluster-secret-file={secret}", env=NO_ENV),
        parse_options("app.db?replicationURL=nats://h:1", env={"HA_CLUSTER_SECRET_FILE": str(secret)}),
    ):
        assert opts.config.cluster_secret_file == str(secret)
    assert parse_options("app.db", env={"HA_CLUSTER_SECRET": "y" * 32}).config.cluster_secret == "y" * 32
    assert parse_options("app.db", {"clusterSecret": "z" * 32}, env=NO_ENV).config.cluster_secret == "z" * 32


def test_plugins_from_options() -> None:
    sink = io.StringIO()
    jsonl = JSONLinesPublisher(sink)

    class Hooks:
        def before_apply(self, cs: object, conn: object) -> bool:
            return False

        def after_apply(self, cs: object, conn: object, error: object) -> None:
            return None

    def strategy(cs: object, conn: object, lww: Any) -> Any:
        return lww()

    hooks = Hooks()
    opts = parse_options(
        "app.db", {"publisher": ["nats", jsonl], "interceptor": hooks, "apply_strategy": strategy}, env=NO_ENV
    )
    assert (opts.plugins.publisher, opts.plugins.cdc) == ("nats", (jsonl,))
    assert opts.plugins.interceptor is hooks
    assert opts.plugins.apply_strategy is strategy
    # a JSON-lines publisher alone publishes to no log
    assert parse_options("app.db", {"publisher": jsonl}, env=NO_ENV).plugins.publisher == "none"
    alone = parse_options("app.db?publisher=jsonl:-", env=NO_ENV).plugins
    assert alone.publisher == "none"
    assert len(alone.cdc) == 1
    assert parse_options("app.db?publisher=outbox", env=NO_ENV).plugins.publisher == "outbox"
    # module:object names in the DSN
    named = parse_options(
        "app.db?interceptor=tests.driver.hooks:Recorder&applyStrategy=tests.driver.hooks:only_t", env=NO_ENV
    ).plugins
    assert type(named.interceptor).__name__ == "Recorder"
    assert callable(named.apply_strategy)
    for given, words in (
        ({"interceptor": object()}, "no before_apply() method"),
        ({"interceptor": "nosuchmodule_x:obj"}, "cannot import"),
        ({"applyStrategy": 3}, "not callable"),
        ({"publisher": "kafka"}, "not a publisher"),
        ({"publisher": "nats", "disablePublisher": True}, "contradicts publisher=nats"),
        ({"publisher": "outbox", "leaderProvider": "static:http://h:1"}, "writer mode static"),
    ):
        with pytest.raises(ConfigError) as refused:
            parse_options("app.db", given, env=NO_ENV)
        assert words in refused.value.message, refused.value.message


def test_replication_id_sets_the_database_id_for_the_server_too() -> None:
    (spec,) = parse_databases(("file:x.db?replicationID=shared.db",), memory=False)
    assert (spec.id, spec.path) == ("shared.db", "x.db")
    (spec,) = parse_databases(("file:x.db?cdcID=other",), memory=False)
    assert spec.id == "other"


def test_json_lines_publisher_targets(tmp_path: Path) -> None:
    from sqlite_ha.changes.changeset import ChangeSet
    from sqlite_ha.replication import codec

    cs = ChangeSet(database="app.db", node="n", hlc=1, timestamp_ns=1)
    payload = codec.encode(cs)
    path = tmp_path / "feed.jsonl"
    to_file = JSONLinesPublisher(path)
    to_file.publish(cs, payload)
    to_file.close()  # a stopped node closes it; started again, it appends again
    to_file.publish(cs, payload)
    to_file.close()
    assert [codec.decode(line).node for line in path.read_bytes().splitlines()] == ["n", "n"]
    binary, text = io.BytesIO(), io.StringIO()
    JSONLinesPublisher(binary).publish(cs, payload)
    JSONLinesPublisher(text).publish(cs, payload)
    assert binary.getvalue() == text.getvalue().encode() == payload + b"\n"
    with pytest.raises(ConfigError) as refused:
        JSONLinesPublisher(tmp_path / "no" / "such" / "dir.jsonl")
    assert "cannot open" in refused.value.message


def test_the_server_takes_its_plugins_from_its_configuration() -> None:
    from sqlite_ha.config import resolve
    from sqlite_ha.plugins import Plugins
    from sqlite_ha.security.nats_access import nats_access

    config = resolve(
        {
            "interceptor": "tests.driver.hooks:Recorder",
            "apply-strategy": "tests.driver.hooks:only_t",
            "async-replication": True,
            "nats-name": "srv-7",
        },
        env={},
    )
    plugins = Plugins.from_config(config)
    assert type(plugins.interceptor).__name__ == "Recorder"
    assert plugins.apply_strategy is not None
    assert plugins.publisher == "outbox"
    assert (plugins.subscriber, plugins.snapshotter, plugins.auto_start, plugins.cdc) == (
        True,
        True,
        True,
        (),
    )
    assert nats_access(config, None).server_options(config).name == "srv-7"
    with pytest.raises(ConfigError) as refused:
        Plugins.from_config(resolve({"apply-strategy": "tests.driver.hooks:nothing_here"}, env={}))
    assert refused.value.setting == "--apply-strategy"


@pytest.mark.parametrize("dsn", [":memory:", "", "file::memory:?cache=shared"])
def test_a_dsn_without_a_file_is_refused_with_the_way_to_name_one(dsn: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_options(dsn, env=NO_ENV)
    assert "mode=memory" in refused.value.message


def test_a_bad_database_name_fails_while_the_options_are_read() -> None:
    """Before any node (or its embedded NATS server, or a cluster secret) is made for it."""
    with pytest.raises(ConfigError) as refused:
        parse_options("a b.db", env=NO_ENV)
    assert "not a usable database name" in refused.value.message
