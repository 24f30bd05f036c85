"""Operator commands that talk to a running node over its HTTP API: snapshots and loading a file.

They are the long operations of running a cluster (hundreds of megabytes either way), so each shows a
progress bar with sizes and rates (tqdm, on stderr, only on a terminal unless ``--progress`` says otherwise)
and checks what it transferred: a downloaded snapshot must match the checksum the node sent, and a file is
written under a temporary name and renamed only once complete.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import json
import os
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any
from urllib.parse import quote, urlsplit

import click
from tqdm import tqdm

from sqlite_ha.errors import HAError

CHUNK = 1 << 20
TIMEOUT = 3600.0  # a load of a large file answers only once every change set is in the log


class AdminError(HAError):
    """A node refused an operator command, or could not be reached."""

    code = "admin_error"


class NodeClient:
    """Just enough HTTP for the admin commands: streaming bodies both ways, the node's JSON errors."""

    def __init__(
        self, url: str, token: str = "", *, cacert: str = "", client_cert: str = "", client_key: str = ""
    ) -> None:
        parts = urlsplit(url if "://" in url else f"http://{url}")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise AdminError(f"--url {url!r}: give the node's HTTP address, e.g. http://127.0.0.1:8080")
        self.url = f"{parts.scheme}://{parts.netloc}"
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._https else 80)
        self._token = token
        self._tls = tls_context(cacert, client_cert, client_key) if self._https else None

    def _connection(self) -> http.client.HTTPConnection:
        if self._tls is not None:
            return http.client.HTTPSConnection(self._host, self._port, timeout=TIMEOUT, context=self._tls)
        return http.client.HTTPConnection(self._host, self._port, timeout=TIMEOUT)

    @contextmanager
    def request(
        self, method: str, path: str, body: IO[bytes] | bytes | None = None, length: int | None = None
    ) -> Iterator[http.client.HTTPResponse]:
        headers = {"Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        if length is not None:
            headers["Content-Length"] = str(length)
            headers["Content-Type"] = "application/vnd.sqlite3"
        conn = self._connection()
        try:
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
            except ssl.SSLCertVerificationError as e:
                raise AdminError(
                    f"cannot reach the node at {self.url}: its certificate is not trusted "
                    f"({e.verify_message})",
                    hint="give the CA that signed it with --cacert (env HA_CACERT)",
                ) from e
            except OSError as e:
                raise AdminError(f"cannot reach the node at {self.url}: {e.strerror or e}") from e
            if resp.status >= 400:
                raise AdminError(_error_text(resp.status, resp.read()))
            yield resp
        finally:
            conn.close()

    def json(self, method: str, path: str) -> Any:
        with self.request(method, path) as resp:
            return json.loads(resp.read())


def tls_context(cacert: str, client_cert: str, client_key: str) -> ssl.SSLContext:
    """The client side of a node's HTTPS: the system's CAs, or ``cacert`` alone; a client certificate for a
    node started with ``--client-ca``."""
    try:
        context = ssl.create_default_context(cafile=cacert or None)
    except (OSError, ssl.SSLError) as e:
        raise AdminError(f"--cacert {cacert}: cannot load it: {e.strerror or e}") from e
    if client_cert:
        try:
            context.load_cert_chain(client_cert, client_key or None)
        except (OSError, ssl.SSLError) as e:
            raise AdminError(f"--client-cert {client_cert}: cannot load it: {e.strerror or e}") from e
    elif client_key:
        raise AdminError("--client-key needs --client-cert")
    return context


def _error_text(status: int, body: bytes) -> str:
    try:
        error = json.loads(body)["error"]
        text = f"{error['message']} (HTTP {status}, {error['code']})"
        return text + (f"; {error['hint']}" if error.get("hint") else "")
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}: {body[:200].decode(errors='replace')}"


def _bar(total: int | None, what: str, progress: bool | None) -> tqdm[Any]:
    return tqdm(
        total=total,
        desc=what,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        disable=(not sys.stderr.isatty()) if progress is None else not progress,
        leave=True,
    )


class _Reader:
    """A file whose reads move a progress bar (http.client sends a file body by reading it)."""

    def __init__(self, f: IO[bytes], bar: tqdm[Any]) -> None:
        self._f = f
        self._bar = bar

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n if n and n > 0 else CHUNK)
        self._bar.update(len(data))
        return data


def _db_path(db: str | None, tail: str) -> str:
    return f"/databases/{quote(db, safe='')}{tail}" if db else tail


# ---------------------------------------------------------------------------------------- commands
_url = click.option(
    "--url",
    envvar="HA_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="HTTP address of a node (env HA_URL)",
)
_token = click.option("--token", envvar="HA_TOKEN", default="", help="the node's --token (env HA_TOKEN)")
_cacert = click.option(
    "--cacert",
    envvar="HA_CACERT",
    default="",
    metavar="FILE",
    help="CA (PEM) to trust for an https:// --url, instead of the system's (env HA_CACERT)",
)
_client_cert = click.option(
    "--client-cert",
    envvar="HA_CLIENT_CERT",
    default="",
    metavar="FILE",
    help="client certificate (PEM, may hold the key too) for a node started with --client-ca "
    "(env HA_CLIENT_CERT)",
)
_client_key = click.option(
    "--client-key", envvar="HA_CLIENT_KEY", default="", metavar="FILE", help="its key (env HA_CLIENT_KEY)"
)
_db = click.option("--db", "db", default=None, help="database id on the node [default: its first database]")
_progress = click.option(
    "--progress/--no-progress", default=None, help="show progress bars [default: when stderr is a terminal]"
)


ClientFactory = Callable[[], NodeClient]  # makes the client of the options given


def _node(func: Callable[..., None]) -> Callable[..., None]:
    """The options that reach a node (``--url``, ``--token``, TLS), handed to the command as one ``node``:
    it makes the client inside the command's ``_run``, where a bad option is a one-line error."""

    @functools.wraps(func)
    def command(url: str, token: str, cacert: str, client_cert: str, client_key: str, **kwargs: Any) -> None:
        def node() -> NodeClient:
            return NodeClient(url, token, cacert=cacert, client_cert=client_cert, client_key=client_key)

        func(node=node, **kwargs)

    for option in (_client_key, _client_cert, _cacert, _token, _url):
        command = option(command)
    return command


def _run(action: Any) -> None:
    try:
        action()
    except AdminError as e:
        click.echo(f"sqlite-ha: {e.message}" + (f" ({e.hint})" if e.hint else ""), err=True)
        sys.exit(1)


def load_file(client: NodeClient, path: Path, db: str | None, progress: bool | None) -> dict[str, Any]:
    """Upload ``path`` to ``POST /load``; the node loads it through replication and answers at the end."""
    try:
        f = path.open("rb")
    except OSError as e:
        raise AdminError(f"cannot read {path}: {e.strerror or e}") from e
    with f:
        size = os.fstat(f.fileno()).st_size
        with _bar(size, f"uploading {path.name}", progress) as bar:
            reader = _Reader(f, bar)
            with client.request("POST", _db_path(db, "/load"), body=reader, length=size) as resp:  # type: ignore[arg-type]
                bar.set_description(f"uploaded {path.name}")
                return json.loads(resp.read())  # type: ignore[no-any-return]


@click.command("load")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_node
@_db
@_progress
def load_command(file: Path, node: ClientFactory, db: str | None, progress: bool | None) -> None:
    """Load a SQLite FILE into an empty database of a running cluster (every node gets its content)."""

    def action() -> None:
        client = node()
        if not sys.stderr.isatty() and progress is None:
            click.echo(f"loading {file} into {db or 'the default database'} on {client.url} ...", err=True)
        done = load_file(client, file, db, progress)
        click.echo(
            f"loaded {done['bytes']:,} bytes into {done['database']}: {done['tables']} tables, "
            f"{done['rows']:,} rows in {done['changesets']:,} change sets, {done['seconds']:.1f}s; "
            f"last seq {done['seq']}"
        )

    _run(action)


@click.group("snapshot")
def snapshot_group() -> None:
    """Take, list, download and restore snapshots of a running cluster."""


@snapshot_group.command("take")
@_node
@_db
def take_command(node: ClientFactory, db: str | None) -> None:
    """Snapshot a database now (skipped when nothing changed since the latest one)."""

    def action() -> None:
        answer = node().json("POST", _db_path(db, "/snapshot"))
        meta = answer["snapshot"]
        verb = "took" if answer["taken"] else "nothing changed since"
        click.echo(f"{verb} snapshot of {meta['database']} at seq {meta['seq']} ({meta['size']:,} bytes)")

    _run(action)


@snapshot_group.command("list")
@_node
@click.option("--json", "as_json", is_flag=True, help="print the metadata as JSON")
def list_command(node: ClientFactory, as_json: bool) -> None:
    """The latest snapshot of each database the node serves."""

    def action() -> None:
        snapshots = node().json("GET", "/snapshots")["snapshots"]
        if as_json:
            click.echo(json.dumps(snapshots, indent=2))
            return
        click.echo(f"{'database':<24} {'seq':>10} {'size':>14} {'taken at (UTC)':<20} node")
        for ident, meta in snapshots.items():
            if meta is None:
                click.echo(f"{ident:<24} {'-':>10} {'-':>14} {'(no snapshot)':<20}")
                continue
            taken = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(meta["taken_at"]))
            click.echo(f"{ident:<24} {meta['seq']:>10} {meta['size']:>14,} {taken:<20} {meta['node']}")

    _run(action)


def download(client: NodeClient, db: str | None, dest: Path, progress: bool | None) -> tuple[int, str]:
    """Stream the latest snapshot into ``dest`` (atomically), checking its SHA-256; returns (seq, sha256)."""
    with client.request("GET", _db_path(db, "/snapshot")) as resp:
        expected = resp.getheader("X-Snapshot-Sha256") or ""
        seq = int(resp.getheader("X-Sequence") or 0)
        length = resp.getheader("Content-Length")
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}-", dir=dest.parent)
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as f, _bar(int(length) if length else None, dest.name, progress) as bar:
                while chunk := resp.read(CHUNK):
                    f.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
                f.flush()
                os.fsync(f.fileno())
            if expected and digest.hexdigest() != expected:
                raise AdminError("the downloaded snapshot does not match its checksum; nothing was written")
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return seq, digest.hexdigest()


@snapshot_group.command("download")
@_node
@_db
@_progress
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="file to write")
def download_command(node: ClientFactory, db: str | None, progress: bool | None, output: Path | None) -> None:
    """Download the latest snapshot of a database to a file (a plain SQLite database), checked."""

    def action() -> None:
        client = node()
        dest = output or Path(f"{db or 'snapshot'}.snapshot.db")
        seq, sha = download(client, db, dest, progress)
        click.echo(f"wrote {dest} ({dest.stat().st_size:,} bytes): snapshot at seq {seq}, sha256 {sha}")

    _run(action)


@snapshot_group.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_node
@_db
@_progress
def restore_command(file: Path, node: ClientFactory, db: str | None, progress: bool | None) -> None:
    """Restore a downloaded snapshot FILE into an empty database of a running cluster (as ``load``)."""

    def action() -> None:
        done = load_file(node(), file, db, progress)
        click.echo(
            f"restored {file} into {done['database']}: {done['tables']} tables, {done['rows']:,} rows; "
            f"last seq {done['seq']}"
        )

    _run(action)
