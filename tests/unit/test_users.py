"""Users and permissions without a node: the verifier format, the auth file's checks, grants, the cache of
checked passwords, and what SQLite's authorizer lets each grant do (with apsw's statement cache in play)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
from pathlib import Path

import pytest

from sqlite_ha.db.authorizer import Permission
from sqlite_ha.db.database import Database
from sqlite_ha.db.dsn import DatabaseSpec
from sqlite_ha.db.statement import Statement
from sqlite_ha.errors import ConfigError, PermissionDenied, StatementNotAllowed
from sqlite_ha.security.passwords import hash_password, parse_verifier, verify_password
from sqlite_ha.security.users import Users, load, token_hash
from sqlite_ha.server.pgwire.wire.auth import ScramServer

R, W, D = Permission.READ, Permission.WRITE, Permission.DDL


# ------------------------------------------------------------------------------------------------ verifiers
def test_verifier_round_trip_and_scram_exchange() -> None:
    text = hash_password("pencil")
    v = parse_verifier(text)
    assert str(v) == text
    assert v.iterations == 4096
    assert len(v.salt) == 16
    assert verify_password(v, "pencil")
    assert not verify_password(v, "pencil ")
    assert hash_password("pencil") != text  # a new salt each time

    # a client's SCRAM proof (RFC 5802) for the password verifies against the stored verifier alone
    server = ScramServer(verifier=v, nonce="srvnonce")
    first = server.initial(_sasl_initial(b"n,,n=,r=clinonce")).decode()
    salt = base64.b64decode(first.split(",s=")[1].split(",")[0])
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    without_proof = "c=biws,r=clinoncesrvnonce"
    auth_message = f"n=,r=clinonce,{first},{without_proof}".encode()
    signature = hmac.digest(hashlib.sha256(client_key).digest(), auth_message, "sha256")
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    final = server.final(f"{without_proof},p={base64.b64encode(proof).decode()}".encode())
    server_key = hmac.digest(salted, b"Server Key", "sha256")
    assert final == b"v=" + base64.b64encode(hmac.digest(server_key, auth_message, "sha256"))


def _sasl_initial(message: bytes) -> bytes:
    return b"SCRAM-SHA-256\0" + len(message).to_bytes(4, "big") + message


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("md5abc", "expected SCRAM-SHA-256$"),
        ("SCRAM-SHA-256$x:c2FsdA==$a:b", "iteration count 'x'"),
        ("SCRAM-SHA-256$4096:c2FsdA==$!!:b", "base64"),
        ("SCRAM-SHA-256$4096:c2FsdA==$c2hvcnQ=:c2hvcnQ=", "32 bytes"),
    ],
)
def test_bad_verifiers(text: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem.replace("$", r"\$")):
        parse_verifier(text)


# ------------------------------------------------------------------------------------------------ the file
def _write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_load_json_and_yaml(tmp_path: Path) -> None:
    h = hash_password("pw")
    tok = token_hash("t0k")
    json_path = _write(
        tmp_path,
        "u.json",
        f'{{"users": [{{"username": "a", "password_hash": "{h}", "tokens": ["{tok}"], "perms": ["all"]}}]}}',
    )
    users, tokens = load(json_path)
    assert users["a"].grant("x.db") == Permission.ALL
    assert tokens[tok] is users["a"]
    assert users["a"].sql_grant("x.db") is None  # every statement: no check at all
    yaml_path = _write(
        tmp_path, "u.yaml", f'- username: b\n  password_hash: "{h}"\n  perms: {{app: read, "*": []}}\n'
    )
    b = load(yaml_path)[0]["b"]
    assert b.grant("app.db") == R
    assert b.grant("app") == R
    assert b.grant("other.db") == Permission.NONE
    assert b.sql_grant("app.db") == R
    assert not b.allows(Permission.ADMIN, "app.db")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.json", '[{"username": "a",\n "perms": {}},]', "a.json line 2 column"),
        ("a.yaml", "- username: a\n  perms: {app: [read]\n", "a.yaml line 3 column"),
        ("a.yaml", "username: a\n", "expected a list of users"),
        (
            "a.yaml",
            "- username: a\n  password: p\n  perms: [rread]\n",
            "users[0] (a): perms.*: unknown permission 'rread'",
        ),
        ("a.yaml", "- username: a\n  pasword: p\n  perms: [read]\n", "users[0] (a): unknown field 'pasword'"),
        ("a.yaml", "- username: a\n  perms: [read]\n", "has neither password_hash nor tokens"),
        (
            "a.yaml",
            "- username: a\n  password_hash: nope\n  perms: [read]\n",
            "users[0] (a): password_hash: expected",
        ),
        (
            "a.yaml",
            "- username: a\n  password: p\n  perms: [read]\n- username: a\n  password: q\n  perms: [read]\n",
            "users[1]: user 'a' is listed twice",
        ),
        ("a.yaml", "- username: a\n  tokens: [abc]\n  perms: [read]\n", 'tokens must be a list of "sha256:'),
        ("a.yaml", "- username: a\n  password: p\n", "perms is missing"),
    ],
)
def test_load_errors_name_the_fault(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match="--auth-file") as err:
        load(_write(tmp_path, name, text))
    assert message in err.value.message


def test_checked_passwords_are_cached_until_a_reload(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "u.yaml", f'- username: a\n  password_hash: "{hash_password("one")}"\n  perms: [read]\n'
    )
    users = Users(path)

    async def main() -> None:
        assert (await users.check_basic("a", "one")) is users.get("a")
        assert await users.check_basic("a", "two") is None
        assert await users.check_basic("nobody", "one") is None
        assert len(users._checked) == 1  # only successes are remembered
        await asyncio.to_thread(
            Path(path).write_text,
            f'- username: a\n  password_hash: "{hash_password("two")}"\n  perms: [read]\n',
        )
        assert users.changed()
        assert users.reload()
        assert await users.check_basic("a", "one") is None
        assert await users.check_basic("a", "two") is not None
        await asyncio.to_thread(Path(path).write_text, "- username: [")
        assert not users.reload()  # broken: the users stay
        assert await users.check_basic("a", "two") is not None

    asyncio.run(main())


# ------------------------------------------------------------------------------------------------ enforcement
@pytest.fixture
def db(tmp_path: Path) -> Database:
    database = Database(DatabaseSpec(id="a.db", path=str(tmp_path / "a.db")))
    asyncio.run(
        database.execute([Statement(sql="CREATE TABLE t(x)"), Statement(sql="INSERT INTO t VALUES (1)")])
    )
    return database


def _run(db: Database, sql: str, grant: Permission | None) -> list[tuple[object, ...]]:
    return asyncio.run(db.execute([Statement(sql=sql, grant=grant)])).results[0].rows


@pytest.mark.parametrize(
    ("sql", "grant", "missing"),
    [
        ("SELECT * FROM t", R, None),
        ("SELECT * FROM t", W, "read"),
        ("SELECT 1", Permission.NONE, "read"),
        ("INSERT INTO t VALUES (2)", W, None),  # a blind insert reads nothing
        ("INSERT INTO t VALUES (2)", R, "write"),
        ("UPDATE t SET x = 3 WHERE x = 2", W, "read"),  # the WHERE reads, as in PostgreSQL
        ("UPDATE t SET x = 3 WHERE x = 2", R | W, None),
        ("INSERT INTO t SELECT x FROM t RETURNING x", R | W, None),
        ("CREATE TABLE u(x)", R | W, "ddl"),
        ("CREATE TABLE u(x)", D, None),
        ("CREATE INDEX i ON t(x)", D, None),
        ("CREATE VIEW v AS SELECT * FROM t", D, None),
        ("DROP TABLE t", D, None),
        ("DROP TABLE t", R | W, "ddl"),
        ("PRAGMA table_info(t)", R, None),
        ("PRAGMA user_version = 3", R, "write"),
        ("CREATE INDEX j ON t(x); SELECT * FROM t", D, "read"),
    ],
)
def test_grants(db: Database, sql: str, grant: Permission, missing: str | None) -> None:
    if missing is None:
        _run(db, sql, grant)
        return
    with pytest.raises(PermissionDenied) as err:
        _run(db, sql, grant)
    assert err.value.permission == missing
    assert err.value.database == "a.db"
    assert err.value.message == f"permission denied: {missing} on a.db"


def test_a_cached_statement_is_checked_again_under_a_narrower_grant(db: Database) -> None:
    """apsw reuses prepared statements by their text, and SQLite asks the authorizer only when it prepares."""
    for _ in range(2):
        _run(db, "INSERT INTO t VALUES (5)", None)  # unrestricted, then cached
        with pytest.raises(PermissionDenied):
            _run(db, "INSERT INTO t VALUES (5)", R)
        _run(db, "INSERT INTO t VALUES (5)", W)  # cached under write…
        with pytest.raises(PermissionDenied):
            _run(db, "INSERT INTO t VALUES (5)", R)  # …and refused again for read
    assert _run(db, "SELECT count(*) FROM t WHERE x = 5", R) == [(4,)]
    rows = db.read_rows_now("SELECT x FROM t LIMIT 1", None, R)
    assert rows == [(1,)]
    with pytest.raises(PermissionDenied):
        db.read_rows_now("SELECT x FROM t LIMIT 1", None, W)
    with pytest.raises(PermissionDenied):
        db.describe("INSERT INTO t VALUES (?)", 1, grant=R)


def test_the_nodes_control_statements_are_not_reused_by_clients(db: Database) -> None:
    """A client's COMMIT used to hit the cached statement the node prepared for itself, unchecked."""
    asyncio.run(db.execute([Statement(sql="INSERT INTO t VALUES (7)")]))  # the writer has run COMMIT
    with pytest.raises(StatementNotAllowed, match="COMMIT is not allowed"):
        asyncio.run(db.execute([Statement(sql="INSERT INTO t VALUES (8)"), Statement(sql="COMMIT")]))
    assert _run(db, "SELECT count(*) FROM t WHERE x = 8", None) == [(0,)]


def test_the_nodes_own_statements_are_not_reused_by_clients(db: Database) -> None:
    """The same for any statement the node prepared with the authorizer off, e.g. into an internal table."""
    with db.internal() as conn:
        conn.execute("CREATE TABLE _ha_secret(x)")
        conn.execute("INSERT INTO _ha_secret VALUES (1)")  # prepared and cached with the authorizer off
    with pytest.raises(StatementNotAllowed, match="internal to sqlite-ha"):
        asyncio.run(db.execute([Statement(sql="INSERT INTO _ha_secret VALUES (1)")]))
    with db.internal() as conn:
        assert conn.execute("SELECT count(*) FROM _ha_secret").fetchall() == [(1,)]
