"""The node's answer that opens a forwarded PostgreSQL session on the writer (``security/node_auth``): it
holds for exactly the node, user, database and challenge it was made for, once, and only while fresh."""

from __future__ import annotations

import pytest

from sqlite_ha.security import node_auth
from sqlite_ha.security.keys import ClusterKeys
from sqlite_ha.security.node_auth import NodeUnauthorized, SessionVerifier, session_keys, sign_session

KEYS = ClusterKeys.from_text("a cluster secret of the test 0123456789")
SALT = b"\x01\x02\x03\x04"


def test_an_answer_holds_once_for_what_it_was_made_for() -> None:
    keys = session_keys(KEYS, None)
    verifier = SessionVerifier(keys)
    answer = sign_session(keys[0], "node2", "ha", "app.db", SALT)
    for node, user, database, salt in (
        ("node3", "ha", "app.db", SALT),
        ("node2", "admin", "app.db", SALT),
        ("node2", "ha", "other.db", SALT),
        ("node2", "ha", "app.db", b"\x00\x02\x03\x04"),
    ):
        with pytest.raises(NodeUnauthorized, match="does not match"):
            verifier.verify(answer, node, user, database, salt)
    verifier.verify(answer, "node2", "ha", "app.db", SALT)
    with pytest.raises(NodeUnauthorized, match="already received"):
        verifier.verify(answer, "node2", "ha", "app.db", SALT)
    assert verifier.refused == 5


def test_a_stale_or_malformed_answer_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = session_keys(KEYS, None)
    verifier = SessionVerifier(keys)
    real_time = node_auth.time.time
    monkeypatch.setattr(node_auth.time, "time", lambda: real_time() - 120)
    old = sign_session(keys[0], "node2", "ha", "app.db", SALT)
    monkeypatch.setattr(node_auth.time, "time", real_time)
    with pytest.raises(NodeUnauthorized, match="old or ahead"):
        verifier.verify(old, "node2", "ha", "app.db", SALT)
    for junk in ("", "v1", "md5" + "0" * 32, "v2 a b c d", "v1 ffffffff 1 abcdefghij xyz"):
        with pytest.raises(NodeUnauthorized):
            verifier.verify(junk, "node2", "ha", "app.db", SALT)


def test_without_a_cluster_secret_the_key_comes_from_the_superuser_password() -> None:
    assert session_keys(None, None) == ()  # no secret, no --pg-user login: no forwarding
    with pytest.raises(NodeUnauthorized, match="accepts no forwarded sessions"):
        SessionVerifier(()).verify("v1 x 1 y z", "node2", "ha", "app.db", SALT)
    mine, theirs = session_keys(None, "pg pass"), session_keys(None, "another pass")
    answer = sign_session(mine[0], "node2", "ha", "app.db", SALT)
    with pytest.raises(NodeUnauthorized):
        SessionVerifier(theirs).verify(answer, "node2", "ha", "app.db", SALT)
    SessionVerifier(mine).verify(answer, "node2", "ha", "app.db", SALT)
    assert session_keys(KEYS, "pg pass") == KEYS.node_keys  # a secret, when there is one
