"""Configuration: precedence flags > env > file > default, parsing, and precise errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from sqlite_ha.config import SETTINGS, parse_duration, parse_size, resolve
from sqlite_ha.errors import ConfigError


def write(tmp_path: Path, text: str) -> str:
    p = tmp_path / "ha.conf"
    p.write_text(text)
    return str(p)


def test_defaults() -> None:
    cfg = resolve({}, env={})
    assert cfg.port == 8080
    assert cfg.nats_port == 4222
    assert cfg.replication_stream == "ha_replication"
    assert cfg.replication_timeout == 15.0
    assert cfg.replication_max_age == 24 * 3600
    assert cfg.replicas == 1
    assert cfg.snapshot_interval == 60.0  # on by default, so that a node can always join (0 turns it off)
    assert cfg.memory is False
    assert cfg.name  # hostname
    assert cfg.databases == ()


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    conf = write(tmp_path, "port 1111\nname from-file\nreplicas 3\n# comment\n\nmemory\n")
    env = {"HA_PORT": "2222", "HA_NAME": "from-env"}
    cfg = resolve({"port": "3333"}, env=env, config_file=conf)
    assert cfg.port == 3333  # flag wins
    assert cfg.name == "from-env"  # env beats file
    assert cfg.replicas == 3  # file beats default
    assert cfg.memory is True  # bare switch in the file means true
    assert resolve({}, env=env, config_file=conf).port == 2222
    assert resolve({}, env={}, config_file=conf).port == 1111


def test_file_accepts_dashes_and_equals(tmp_path: Path) -> None:
    conf = write(tmp_path, "--replication-timeout=2m30s\n-nats-port 0\ntoken 'quoted secret'\n")
    cfg = resolve({}, env={}, config_file=conf)
    assert cfg.replication_timeout == 150.0
    assert cfg.nats_port == 0
    assert cfg.token == "quoted secret"


def test_switches_from_env_and_flags() -> None:
    assert resolve({}, env={"HA_MEMORY": "true"}).memory is True
    assert resolve({"memory": "false"}, env={"HA_MEMORY": "true"}).memory is False
    assert resolve({"memory": True}, env={}).memory is True


def test_databases_from_ha_args_when_none_given() -> None:
    assert resolve({}, env={"HA_ARGS": "a.db 'b c.db'"}).databases == ("a.db", "b c.db")
    assert resolve({}, databases=["x.db"], env={"HA_ARGS": "a.db"}).databases == ("x.db",)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("15s", 15), ("1m30s", 90), ("24h", 86400), ("250ms", 0.25), ("0", 0), ("1.5h", 5400), ("10us", 1e-5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5x", "s", "1 m", "-1s", "15", ""])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_sizes() -> None:
    assert parse_size("1024") == 1024
    assert parse_size("1KB") == 1024
    assert parse_size("16MiB") == 16 * 1024 * 1024
    with pytest.raises(ValueError, match="size"):
        parse_size("lots")


@pytest.mark.parametrize(
    ("flags", "env", "setting", "source"),
    [
        ({"port": "99999"}, {}, "--port", None),
        ({"port": "http"}, {}, "--port", None),
        ({}, {"HA_REPLICATION_TIMEOUT": "5x"}, "--replication-timeout", "HA_REPLICATION_TIMEOUT"),
        ({"replicas": "7"}, {}, "--replicas", None),
        ({"log-level": "loud"}, {}, "--log-level", None),
        ({"replication-url": "http://x"}, {}, "--replication-url", None),
        ({"name": "has space"}, {}, "--name", None),
        ({"nats-pass": "x"}, {}, "--nats-pass", None),
        ({"bogus": "1"}, {}, "--bogus", "command line"),
    ],
)
def test_errors_name_the_setting(
    flags: dict[str, str], env: dict[str, str], setting: str, source: str | None
) -> None:
    with pytest.raises(ConfigError) as info:
        resolve(flags, env=env)
    assert info.value.setting == setting
    assert setting in info.value.message
    if source:
        assert source in info.value.message


def test_file_errors_name_file_and_line(tmp_path: Path) -> None:
    conf = write(tmp_path, "port 1\nreplication-max-age forever\n")
    with pytest.raises(ConfigError) as info:
        resolve({}, env={}, config_file=conf)
    assert "--replication-max-age" in info.value.message
    assert conf in info.value.message
    with pytest.raises(ConfigError, match=r"ha.conf:1.*unknown"):
        resolve({}, env={}, config_file=write(tmp_path, "colour blue\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        resolve({}, env={}, config_file=str(tmp_path / "missing.conf"))


def test_secrets_are_redacted() -> None:
    cfg = resolve({"token": "s3cret", "nats-user": "u", "nats-pass": "p4ss"}, env={})
    shown = repr(cfg) + str(cfg.redacted())
    assert "s3cret" not in shown
    assert "p4ss" not in shown


def test_every_setting_has_help_and_env_name() -> None:
    for s in SETTINGS:
        assert s.help.strip(), s.name
        assert s.env == "HA_" + s.name.upper().replace("-", "_")


def test_nats_url_selection() -> None:
    assert resolve({}, env={}).nats_url == "nats://127.0.0.1:4222"
    assert resolve({"nats-port": "0"}, env={}).nats_url == ""
    ext = resolve({"replication-url": "nats://10.0.0.1:4222"}, env={})
    assert ext.nats_url == "nats://10.0.0.1:4222"
    assert ext.embedded_nats is False


def test_replication_url_may_list_cluster_servers() -> None:
    cfg = resolve({"replication-url": "nats://a:4222, nats://b:4222"}, env={})
    assert cfg.nats_url == "nats://a:4222,nats://b:4222"
    with pytest.raises(ConfigError, match="--replication-url"):
        resolve({"replication-url": "nats://a:4222,http://b"}, env={})


def test_max_transaction_size() -> None:
    assert resolve({}, env={}).max_transaction_size == 512 * 1024 * 1024
    assert resolve({"max-transaction-size": "900MB"}, env={}).max_transaction_size == 900 * 1024 * 1024
    for bad in ("1GB", "1000", "lots"):  # beyond SQLite's longest value (1e9 bytes), under 1MB, not a size
        with pytest.raises(ConfigError, match="max-transaction-size"):
            resolve({"max-transaction-size": bad}, env={})


def test_cleartext_pg_passwords_need_tls_or_an_explicit_yes() -> None:
    with pytest.raises(ConfigError, match="--pg-auth: password sends the password in clear"):
        resolve({"pg-auth": "password"}, env={})
    assert resolve({"pg-auth": "password", "pg-allow-cleartext": True}, env={}).pg_allow_cleartext
    with_cert = resolve({"pg-auth": "password", "pg-cert": "c.pem", "pg-key": "k.pem"}, env={})
    assert with_cert.pg_tls == "allow"


def test_go_ha_variables_are_read_as_the_settings_they_mean() -> None:
    env = {
        "HA_PUBLISHER_TIMEOUT": "7s",
        "HA_STREAM_MAX_AGE": "2h",
        "HA_DELIVER_POLICY": "new",
        "HA_ROW_IDENTIDY": "rowid",  # sic, the seed's spelling
        "HA_NATS_CONFIG_NAME": "/etc/nats.conf",
        "HA_LEADER_PROVIDER": "static:http://10.0.0.1:8080",
        "HA_AUTO_START": "true",
        "HA_DISABLE_SNAPSHOTTER": "false",
    }
    c = resolve({}, env=env)
    assert c.replication_timeout == 7.0
    assert c.replication_max_age == 7200.0
    assert c.replication_policy == "new"
    assert c.row_identify == "rowid"
    assert c.nats_config == "/etc/nats.conf"
    assert c.leader_static == "http://10.0.0.1:8080"
    # ours wins over theirs
    assert resolve({}, env={**env, "HA_REPLICATION_TIMEOUT": "3s"}).replication_timeout == 3.0


def test_go_ha_variables_that_cannot_be_honoured_are_refused_by_name() -> None:
    for var, value, words in (
        ("HA_DISABLE_PUBLISHER", "true", "always publishes"),
        ("HA_DISABLE_SUBSCRIBER", "1", "always applies"),
        ("HA_AUTO_START", "false", "always starts"),
        ("HA_GRPC_PORT", "9090", "no gRPC server"),
        ("HA_REPLICATION_ID", "shared", "replicationID"),
        ("HA_DISABLE_SNAPSHOTTER", "maybe", "not a boolean"),
    ):
        with pytest.raises(ConfigError) as refused:
            resolve({}, env={var: value})
        assert refused.value.setting == var
        assert words in refused.value.message
    with pytest.raises(ConfigError) as refused:
        resolve({}, env={"HA_STREAM_MAX_AGE": "forever"})
    assert "HA_STREAM_MAX_AGE" in refused.value.message  # a bad value names the variable it came from


def test_unknown_ha_variables_get_a_warning_with_the_closest_name(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sqlite_ha.config.aliases"):
        resolve(
            {},
            env={
                "HA_REPLICATION_TIMOUT": "5s",
                "HA_ASYNC_PUBLISHER_OUTBOX_DIR": "x",
                "HA_ARGS": "a.db",
                "HA_URL": "u",
            },
        )
    text = caplog.text
    assert "HA_REPLICATION_TIMOUT is not a sqlite-ha setting" in text
    assert "did you mean HA_REPLICATION_TIMEOUT?" in text
    assert "HA_ASYNC_PUBLISHER_OUTBOX_DIR is ignored" in text
    assert "HA_ARGS" not in text
    assert "HA_URL" not in text
