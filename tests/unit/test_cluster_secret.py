"""Where a node's cluster secret comes from, the one a first node makes, and the NATS access it gives."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sqlite_ha.config import Config, resolve
from sqlite_ha.errors import ConfigError
from sqlite_ha.security.cluster_secret import SECRET_FILE_NAME, cluster_secret
from sqlite_ha.security.keys import ClusterKeys, generate_secret
from sqlite_ha.security.nats_access import nats_access, nats_user


def config(tmp_path: Path, **flags: str | bool) -> Config:
    return resolve({"nats-store-dir": str(tmp_path / "node" / "nats"), **flags}, env={})


def test_a_node_with_embedded_nats_makes_a_secret_once(tmp_path: Path) -> None:
    cfg = config(tmp_path)
    first = cluster_secret(cfg)
    path = tmp_path / "node" / SECRET_FILE_NAME
    assert (first.source, first.path, first.created) == ("generated", path, True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [SECRET_FILE_NAME]  # no temporary file left
    again = cluster_secret(cfg)
    assert (again.source, again.created) == ("generated", False)
    assert first.keys is not None
    assert again.keys is not None
    assert again.keys.signing == first.keys.signing
    assert repr(first.keys) == f"ClusterKeys({first.keys.signing.key_id})"  # no secret in its repr


def test_a_configured_secret_wins_and_nothing_is_written(tmp_path: Path) -> None:
    secret = generate_secret()
    got = cluster_secret(config(tmp_path, **{"cluster-secret": secret}))
    assert got.source == "--cluster-secret"
    assert got.keys is not None
    assert got.keys.signing == ClusterKeys.from_text(secret).signing
    assert not (tmp_path / "node").exists()


def test_a_secret_file_two_secrets_during_a_rotation(tmp_path: Path) -> None:
    new, old = generate_secret(), generate_secret()
    path = tmp_path / "secret"
    path.write_text(f"{new}\n{old}\n")
    path.chmod(0o600)
    got = cluster_secret(config(tmp_path, **{"cluster-secret-file": str(path)}))
    assert (got.source, got.path) == ("--cluster-secret-file", path)
    assert got.keys is not None
    access = nats_access(config(tmp_path), got.keys)
    passwords = got.keys.nats_passwords()
    assert access.users == ((nats_user(passwords[0]), passwords[0]), (nats_user(passwords[1]), passwords[1]))
    assert access.users[0][0] != access.users[1][0]  # nats-server refuses two users of one name
    options = access.server_options(config(tmp_path))
    assert options.route_logins == access.users  # outgoing routes try both: a rotation goes on unharmed
    assert access.status() == {"auth": "cluster-secret", "tls": False}


def test_a_loose_secret_file_is_warned_about(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "secret"
    secret = generate_secret()
    path.write_text(secret)
    path.chmod(0o640)
    cluster_secret(config(tmp_path, **{"cluster-secret-file": str(path)}))
    assert "readable by its group (mode 0640)" in caplog.text
    assert secret not in caplog.text


def test_an_external_nats_needs_the_secret_of_the_cluster(tmp_path: Path) -> None:
    cfg = config(tmp_path, **{"replication-url": "nats://10.0.0.1:4222"})
    with pytest.raises(ConfigError, match="needs the cluster secret of the nodes it joins") as e:
        cluster_secret(cfg)
    assert "--cluster-secret-file" in e.value.message
    assert "--insecure-replication" in e.value.message
    insecure = cluster_secret(
        config(tmp_path, **{"replication-url": "nats://h:4222", "insecure-replication": True})
    )
    assert (insecure.keys, insecure.source) == (None, "none")


def test_no_nats_no_secret(tmp_path: Path) -> None:
    got = cluster_secret(config(tmp_path, **{"nats-port": "0"}))
    assert (got.keys, got.source) == (None, "none")
    assert not (tmp_path / "node").exists()


def test_the_secret_is_given_once(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give the cluster secret once"):
        config(tmp_path, **{"cluster-secret": generate_secret(), "cluster-secret-file": "/x"})


def test_an_explicit_nats_user_wins_over_the_secret(tmp_path: Path) -> None:
    cfg = config(tmp_path, **{"nats-user": "ops", "nats-pass": "pw"})
    access = nats_access(cfg, ClusterKeys.from_text(generate_secret()))
    assert (access.mode, access.users) == ("user", (("ops", "pw"),))
    options = access.server_options(cfg)
    assert (options.user, options.password, options.other_users) == ("ops", "pw", ())
    assert options.route_logins == (("ops", "pw"),)


def test_a_secret_that_cannot_be_kept_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "node").write_text("a file where the node's directory should be")
    with pytest.raises(ConfigError, match="cannot keep the cluster secret in"):
        cluster_secret(config(tmp_path))


def test_the_secret_file_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "secret"
    secret = generate_secret()
    path.write_text(secret + "\n")
    path.chmod(0o600)
    cfg = resolve({}, env={"HA_CLUSTER_SECRET_FILE": str(path)})
    assert (cfg.cluster_secret, cfg.cluster_secret_file) == ("", str(path))
    got = cluster_secret(cfg)
    assert (got.source, got.path) == ("--cluster-secret-file", path)
    assert got.keys is not None
    assert got.keys.signing == ClusterKeys.from_text(secret).signing
