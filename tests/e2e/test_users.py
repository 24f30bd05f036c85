"""Users of ``--auth-file`` against a real node: HTTP Basic and bearer tokens (fast path and aiohttp), the
PostgreSQL wire with psycopg and asyncpg (SCRAM), permissions per database enforced by SQLite's authorizer
(401 / 403 / 42501), reloading on change and on SIGHUP, a broken file, and ``sqlite-ha passwd``."""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import socket
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import psycopg
import pytest

from sqlite_ha.security.passwords import hash_password, parse_verifier, verify_password
from sqlite_ha.security.users import token_hash
from sqlite_ha.testing import NodeProcess, free_port, wait_for

PASSWORDS = {"reader": "r3ader pw", "writer": "wr1ter pw", "admin": "adm1n pw"}
WRITER_TOKEN = "writer-token-0123456789abcdef"
NODE_TOKEN = "node-token"
PG_PASS = "legacy pg pass"


def auth_yaml(extra: str = "", hashes: dict[str, str] | None = None) -> str:
    h = hashes or {name: hash_password(pw) for name, pw in PASSWORDS.items()}
    return f"""# users of the test node
- username: reader
  password_hash: "{h["reader"]}"
  perms: {{app.db: [read]}}
- username: writer
  password_hash: "{h["writer"]}"
  tokens: ["{token_hash(WRITER_TOKEN)}"]
  perms:
    app: [read, write]
- username: admin
  password_hash: "{h["admin"]}"
  perms: {{"*": [all]}}
{extra}"""


def basic(user: str, password: str | None = None) -> dict[str, str]:
    pw = PASSWORDS[user] if password is None else password
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode()}


@pytest.fixture(scope="module")
def users_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    workdir = tmp_path_factory.mktemp("users")
    hashes = {name: hash_password(pw) for name, pw in PASSWORDS.items()}
    (workdir / "users.yaml").write_text(auth_yaml(hashes=hashes))
    port = free_port()
    node = NodeProcess(
        workdir=workdir,
        args=[
            "app.db",
            "other.db",
            "--auth-file",
            "users.yaml",
            "--pg-port",
            str(port),
            "--pg-pass",
            PG_PASS,
        ],
        token=NODE_TOKEN,
    )
    node.pg_port = port  # type: ignore[attr-defined]
    node.hashes = hashes  # type: ignore[attr-defined]
    node.start()
    try:
        assert (
            node.request("POST", "/query", [{"sql": "CREATE TABLE t(x INTEGER)"}]).status == 200
        )  # --token: admin
        yield node
    finally:
        if node.stop() != 0:
            print(node.logs())


def call(
    node: NodeProcess, body: Any, headers: dict[str, str], *, db: str = "app.db", slow: bool = False
) -> Any:
    """POST a query as a user; ``slow`` sends it through aiohttp (X-Min-Sequence hands it over)."""
    hdrs = dict(headers)
    if slow:
        hdrs["X-Min-Sequence"] = "0"
    return node.request("POST", f"/databases/{db}", body, headers=hdrs, auth=False)


# ------------------------------------------------------------------------------------------------ HTTP
@pytest.mark.parametrize("slow", [False, True], ids=["fast-path", "aiohttp"])
def test_http_permissions(users_node: NodeProcess, slow: bool) -> None:
    n = users_node
    reader, writer = basic("reader"), basic("writer")
    assert call(n, {"sql": "INSERT INTO t VALUES (1)"}, writer, slow=slow).status == 200
    got = call(n, {"sql": "SELECT count(*) FROM t"}, reader, slow=slow)
    assert got.status == 200
    assert got.json()["rows"][0][0] >= 1

    denied = call(n, {"sql": "INSERT INTO t VALUES (2)"}, reader, slow=slow)
    assert denied.status == 403
    error = denied.json()["error"]
    assert error == {
        "code": "permission_denied",
        "message": "permission denied: write on app.db",
        "permission": "write",
        "database": "app.db",
    }
    ddl = call(n, {"sql": "CREATE TABLE u(x)"}, writer, slow=slow)
    assert ddl.status == 403
    assert ddl.json()["error"]["message"] == "permission denied: ddl on app.db"
    # a write inside a list is refused as a whole: nothing of it stays
    mixed = call(n, [{"sql": "INSERT INTO t VALUES (3)"}, {"sql": "DROP TABLE t"}], writer, slow=slow)
    assert mixed.status == 403
    assert call(n, {"sql": "SELECT count(*) FROM t WHERE x = 3"}, reader, slow=slow).json()["rows"] == [[0]]
    # no permission at all on other.db
    other = call(n, {"sql": "SELECT 1"}, reader, db="other.db", slow=slow)
    assert other.status == 403
    assert other.json()["error"]["message"] == "permission denied: read on other.db"
    # the bearer token of a user is that user
    bearer = {"Authorization": f"Bearer {WRITER_TOKEN}"}
    assert call(n, {"sql": "INSERT INTO t VALUES (4)"}, bearer, slow=slow).status == 200
    assert call(n, {"sql": "CREATE TABLE v(x)"}, bearer, slow=slow).status == 403
    assert call(n, {"sql": "CREATE TABLE IF NOT EXISTS w(x)"}, basic("admin"), slow=slow).status == 200


@pytest.mark.parametrize("slow", [False, True], ids=["fast-path", "aiohttp"])
def test_http_unauthorized(users_node: NodeProcess, slow: bool) -> None:
    n = users_node
    for headers in ({}, basic("reader", "wrong"), basic("nobody", "x"), {"Authorization": "Bearer nope"}):
        resp = call(n, {"sql": "SELECT 1"}, headers, slow=slow)
        assert resp.status == 401, headers
        assert resp.headers["WWW-Authenticate"] == 'Basic realm="sqlite-ha"'
        assert resp.json()["error"]["code"] == "unauthorized"
    assert n.request("GET", "/healthz", auth=False).status == 200
    assert n.request("GET", "/readyz", auth=False).status == 200


def test_http_admin_routes(users_node: NodeProcess) -> None:
    n = users_node
    denied = n.request("GET", "/status", headers=basic("writer"), auth=False)
    assert denied.status == 403
    assert denied.json()["error"]["message"] == "permission denied: admin on *"
    assert n.request("GET", "/status", headers=basic("admin"), auth=False).status == 200
    assert n.request("GET", "/status").status == 200  # --token is an admin of everything
    load = n.request("POST", "/databases/app.db/load", raw=b"x", headers=basic("writer"), auth=False)
    assert load.status == 403
    assert load.json()["error"]["permission"] == "admin"
    # a backup is a read of everything
    assert n.request("GET", "/databases/app.db", headers=basic("reader"), auth=False).status == 200
    assert n.request("GET", "/databases/other.db", headers=basic("reader"), auth=False).status == 403
    listed = n.request("GET", "/databases", headers=basic("reader"), auth=False).json()
    assert [d["id"] for d in listed["databases"]] == ["app.db"]
    everything = n.request("GET", "/databases", headers=basic("admin"), auth=False).json()
    assert sorted(d["id"] for d in everything["databases"]) == ["app.db", "other.db"]


# ------------------------------------------------------------------------------------------------ PG
def dsn(node: NodeProcess, user: str, password: str | None = None, dbname: str = "app") -> str:
    pw = PASSWORDS.get(user, "") if password is None else password
    return f"host=127.0.0.1 port={node.pg_port} user={user} password='{pw}' dbname={dbname}"  # type: ignore[attr-defined]


def test_psycopg_permissions(users_node: NodeProcess) -> None:
    n = users_node
    with psycopg.connect(dsn(n, "writer"), autocommit=True) as conn:
        conn.execute("INSERT INTO t VALUES (%s)", (10,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"permission denied: ddl on app.db"):
            conn.execute("CREATE TABLE pg_made(x int)")
    with psycopg.connect(dsn(n, "reader"), autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM t WHERE x = %s", (10,)).fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"permission denied: write on app.db"):
            conn.execute("UPDATE t SET x = 11 WHERE x = 10")
        with (
            pytest.raises(psycopg.errors.InsufficientPrivilege, match=r"permission denied: write on app.db"),
            conn.transaction(),
        ):
            conn.execute("DELETE FROM t")
        assert conn.execute("SELECT count(*) FROM t WHERE x = 10").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match=r'database "other.db"'):
            conn.execute("SET DATABASE = other")
    with pytest.raises(psycopg.OperationalError, match=r'permission denied for database "other.db"'):
        psycopg.connect(dsn(n, "reader", dbname="other"))
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "reader"'):
        psycopg.connect(dsn(n, "reader", "wrong"))
    with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "nobody"'):
        psycopg.connect(dsn(n, "nobody", "x"))
    # --pg-user/--pg-pass (changed from the default) keeps every permission
    with psycopg.connect(dsn(n, "ha", PG_PASS), autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS legacy(x int)")


def test_asyncpg_permissions(users_node: NodeProcess) -> None:
    async def main() -> None:
        port = users_node.pg_port  # type: ignore[attr-defined]
        reader = await asyncpg.connect(
            host="127.0.0.1", port=port, user="reader", password=PASSWORDS["reader"], database="app"
        )
        try:
            select = await reader.prepare("SELECT count(*) FROM t WHERE x >= $1")
            for _ in range(3):  # the point-read path answers prepared reads inline
                assert await select.fetchval(0) >= 1
            with pytest.raises(
                asyncpg.InsufficientPrivilegeError, match=r"permission denied: write on app.db"
            ):
                await reader.execute("INSERT INTO t VALUES (20)")
            with pytest.raises(
                asyncpg.InsufficientPrivilegeError, match=r"permission denied: write on app.db"
            ):
                await reader.fetch("INSERT INTO t VALUES ($1) RETURNING x", 21)
        finally:
            await reader.close()
        writer = await asyncpg.connect(
            host="127.0.0.1", port=port, user="writer", password=PASSWORDS["writer"], database="app"
        )
        try:
            await writer.execute("INSERT INTO t VALUES (22)")
            async with writer.transaction():
                await writer.execute("INSERT INTO t VALUES (23)")
            with pytest.raises(asyncpg.InsufficientPrivilegeError, match=r"permission denied: ddl on app.db"):
                await writer.execute("DROP TABLE t")
        finally:
            await writer.close()

    asyncio.run(main())


# ------------------------------------------------------------------------------------------------ reload
def _can_log_in(node: NodeProcess, user: str, password: str) -> bool:
    resp = node.request("POST", "/query", {"sql": "SELECT 1"}, headers=basic(user, password), auth=False)
    return resp.status == 200


def test_reload_on_change_and_on_sighup(users_node: NodeProcess) -> None:
    n = users_node
    path = n.workdir / "users.yaml"
    hashes: dict[str, str] = dict(n.hashes)  # type: ignore[attr-defined]
    late = "- username: late\n  password: late pw\n  perms: {app.db: [read]}\n"
    # 1. the file changes: the new user logs in without a restart
    tmp = path.with_suffix(".new")
    tmp.write_text(auth_yaml(late, hashes))
    os.replace(tmp, path)
    wait_for(lambda: _can_log_in(n, "late", "late pw"), 10, "the new user of the auth file")
    assert "has a plain password" in n.logs()

    # 2. a broken file keeps the users loaded before, and says why
    tmp.write_text(auth_yaml(late, hashes) + "- username: [\n")
    os.replace(tmp, path)
    wait_for(lambda: "--auth-file not reloaded" in n.logs(), 10, "the log of the broken auth file")
    assert _can_log_in(n, "late", "late pw")
    assert _can_log_in(n, "reader", PASSWORDS["reader"])

    # 3. SIGHUP: a change the watcher cannot see (same size, inode and mtime) is read on the signal
    tmp.write_text(auth_yaml(late, hashes))
    os.replace(tmp, path)
    wait_for(lambda: n.logs().count("--auth-file reloaded") >= 2, 10, "the repaired auth file")
    stat = path.stat()
    new_hash = hash_password("rotated pw")
    assert len(new_hash) == len(hashes["reader"])
    text = path.read_text().replace(hashes["reader"], new_hash)
    with path.open("r+") as f:  # in place: same inode, same size
        f.write(text)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert _can_log_in(n, "reader", PASSWORDS["reader"])
    assert n.pid is not None
    os.kill(n.pid, signal.SIGHUP)
    wait_for(lambda: _can_log_in(n, "reader", "rotated pw"), 10, "the rotated password after SIGHUP")
    assert not _can_log_in(n, "reader", PASSWORDS["reader"])
    with psycopg.connect(dsn(n, "reader", "rotated pw"), autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    # back as it was, for the other tests
    path.write_text(auth_yaml(hashes=hashes))
    os.kill(n.pid, signal.SIGHUP)
    wait_for(lambda: _can_log_in(n, "reader", PASSWORDS["reader"]), 10, "the restored auth file")
    assert n.pid is not None  # SIGHUP does not stop the node


# ------------------------------------------------------------------------------------------------ start
def test_broken_auth_file_at_start(tmp_path: Path) -> None:
    (tmp_path / "users.json").write_text('[\n  {"username": "a",\n   "perms": {"app.db": ["read"]},,\n]')
    node = NodeProcess(workdir=tmp_path, args=["app.db", "--auth-file", "users.json"])
    node.start(wait_ready=False)
    assert node.proc is not None
    assert node.proc.wait(30) == 2
    assert "--auth-file: users.json line 3 column" in node.logs()

    (tmp_path / "users.yaml").write_text("- username: a\n  password: pw\n  perms: {app.db: [read, wirte]}\n")
    node = NodeProcess(workdir=tmp_path, args=["app.db", "--auth-file", "users.yaml"], name="node2")
    node.start(wait_ready=False)
    assert node.proc is not None
    assert node.proc.wait(30) == 2
    assert "users[0] (a): perms.app.db: unknown permission 'wirte'" in node.logs()


def _first_auth_request(port: int, user: str) -> int:
    """Send a StartupMessage and return the code of the server's first Authentication message."""
    params = f"user\0{user}\0database\0app\0\0".encode()
    startup = struct.pack("!ii", 8 + len(params), 196608) + params
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(startup)
        head = sock.recv(9, socket.MSG_WAITALL)
        assert head[:1] == b"R", head
        return int(struct.unpack("!i", head[5:9])[0])


def test_md5_method_uses_scram_for_auth_file_users(tmp_path: Path) -> None:
    """A SCRAM verifier cannot check an MD5 exchange: such users get SCRAM, as PostgreSQL does."""
    (tmp_path / "users.yaml").write_text(auth_yaml())
    port = free_port()
    args = [
        "app.db",
        "--auth-file",
        "users.yaml",
        "--pg-port",
        str(port),
        "--pg-auth",
        "md5",
        "--pg-pass",
        "p",
    ]
    node = NodeProcess(workdir=tmp_path, args=args).start()
    try:
        assert _first_auth_request(port, "reader") == 10  # AuthenticationSASL
        assert _first_auth_request(port, "ha") == 5  # AuthenticationMD5Password for --pg-user
        with psycopg.connect(
            f"host=127.0.0.1 port={port} user=reader password='{PASSWORDS['reader']}' dbname=app"
        ) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        node.stop()


def test_default_pg_password_is_off_with_an_auth_file(tmp_path: Path) -> None:
    (tmp_path / "users.yaml").write_text(auth_yaml())
    port = free_port()
    node = NodeProcess(
        workdir=tmp_path, args=["app.db", "--auth-file", "users.yaml", "--pg-port", str(port)]
    ).start()
    try:
        with pytest.raises(psycopg.OperationalError, match='password authentication failed for user "ha"'):
            psycopg.connect(f"host=127.0.0.1 port={port} user=ha password=ha dbname=app")
    finally:
        node.stop()


# ------------------------------------------------------------------------------------------------ passwd
def test_passwd_command() -> None:
    run = [sys.executable, "-m", "sqlite_ha", "passwd"]
    out = subprocess.run(run, input="pässword\n", capture_output=True, text=True, timeout=60, check=True)
    verifier = parse_verifier(out.stdout.strip())
    assert verify_password(verifier, "pässword")
    assert not verify_password(verifier, "password")
    assert "pässword" not in out.stdout + out.stderr
    empty = subprocess.run(run, input="\n", capture_output=True, text=True, timeout=60)
    assert empty.returncode == 2
    assert "the password is empty" in empty.stderr
    token = subprocess.run([*run, "--token"], capture_output=True, text=True, timeout=60, check=True)
    lines = token.stdout.splitlines()
    assert lines[0].startswith("token: ")
    assert token_hash(lines[0].removeprefix("token: ")) in lines[1]
