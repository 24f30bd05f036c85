"""The databases a node serves, by id, in the order they were given (the first one is the default).

Databases created over the API live in ``--create-db-dir``, under a name a client chose. Such a name must
never reach a database already served: not by the way a DSN is read (``app.db#x`` and ``app.db\t`` both
open ``app.db``: ``#`` starts a URL fragment, and tabs are dropped from URLs), not by a name that differs only
in case (one file on a case-insensitive file system), not as a SQLite side file (``app.db-wal``), and not
through a symbolic link in the directory. So a new name is checked whole, character by character, before
anything is opened, and the file is made without following a link.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from sqlite_ha.db.database import Database, DatabaseOptions
from sqlite_ha.db.dsn import DatabaseSpec, parse_dsn, valid_id
from sqlite_ha.errors import BadRequest, ConfigError, Conflict, DatabaseNotFound, StatementNotAllowed

log = logging.getLogger(__name__)

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SIDE_FILES = ("-wal", "-shm", "-journal")
_NAME_CHAR = re.compile(r"[A-Za-z0-9._-]")


class Databases:
    def __init__(self, options: DatabaseOptions, *, create_dir: str = "", memory: bool = False) -> None:
        self._options = options
        self._create_dir = Path(create_dir) if create_dir else None
        self._memory = memory
        self._dbs: dict[str, Database] = {}
        self._created: set[str] = set()  # ids created over the API (their files may be deleted over it)

    def open_all(self, specs: list[DatabaseSpec]) -> None:
        """Open the databases given at start, then those created earlier over the API."""
        for spec in specs:
            self._add(spec)
        if self._create_dir is not None and self._create_dir.is_dir() and not self._memory:
            for path in sorted(self._create_dir.iterdir()):
                if path.name in self._dbs or not _is_sqlite_file(path):
                    continue
                if path.is_symlink() or self._same_file_served(path) is not None:
                    log.warning("not serving %s: a link, or another name of a database served", path)
                    continue
                self._add(parse_dsn(str(path), memory=False))
                self._created.add(path.name)

    def _add(self, spec: DatabaseSpec) -> Database:
        db = Database(spec, self._options)
        self._dbs[spec.id] = db
        log.info("serving database %s (%s)", spec.id, "memory" if spec.memory else spec.path)
        return db

    def reopen(self, spec: DatabaseSpec) -> Database:
        """Open a database again in its place, after its file was replaced (the old one must be closed)."""
        if spec.id not in self._dbs:
            raise DatabaseNotFound(f"no database {spec.id!r} on this node", database=spec.id)
        db = Database(spec, self._options)
        self._dbs[spec.id] = db
        log.info("reopened database %s", spec.id)
        return db

    def get(self, ident: str | None = None) -> Database:
        """The database named ``ident``, or the default one."""
        if ident is None:
            try:
                return next(iter(self._dbs.values()))
            except StopIteration:
                raise DatabaseNotFound("this node serves no database") from None
        try:
            return self._dbs[ident]
        except KeyError:
            raise DatabaseNotFound(f"no database {ident!r} on this node", database=ident) from None

    def __iter__(self) -> Iterator[Database]:
        return iter(list(self._dbs.values()))

    def __len__(self) -> int:
        return len(self._dbs)

    def created_over_api(self, ident: str) -> bool:
        return ident in self._created

    def create(self, dsn: str) -> Database:
        """Create a database over the API, in ``--create-db-dir``."""
        if self._create_dir is None:
            raise StatementNotAllowed(
                "creating databases is disabled", hint="start the node with --create-db-dir"
            )
        if "#" in dsn:  # a URL's fragment: the DSN reader would drop what follows
            raise BadRequest(f"{dsn!r}: '#' is not allowed in a database name or DSN")
        name, _, query = (dsn[5:] if dsn.startswith("file:") else dsn).partition("?")
        self._check_new_name(dsn, name)
        try:
            target = f"file:{self._create_dir / name}" + (f"?{query}" if query else "")
            spec = parse_dsn(target, memory=self._memory)
        except ConfigError as e:
            raise BadRequest(f"{dsn!r}: {e.message.split(': ', 1)[-1]}") from None
        if spec.id != name:  # the checks above make this impossible; a DSN reader's surprise must not pass
            raise BadRequest(f"{dsn!r}: the name reads as {spec.id!r}; give a plain file name")
        self._create_dir.mkdir(parents=True, exist_ok=True)
        if not spec.memory:
            self._make_file(dsn, self._create_dir / name)
        db = self._add(spec)
        self._created.add(spec.id)
        return db

    def _check_new_name(self, dsn: str, name: str) -> None:
        """Refuse a name that is not plain, or that could reach a database already served."""
        if "/" in name or "\\" in name or name.startswith("."):
            raise BadRequest(f"{dsn!r}: give a plain file name; databases are created in --create-db-dir")
        bad = next((ch for ch in name if not _NAME_CHAR.fullmatch(ch)), None)
        if bad is not None:
            raise BadRequest(
                f"{dsn!r}: {bad!r} is not allowed in a database name (letters, digits, . _ - only)",
                hint="ASCII letters and digits, '.', '_' and '-'; the name starts with a letter or digit",
            )
        if not valid_id(name):
            raise BadRequest(f"{dsn!r}: {name!r} is not a usable database name (1 to 128 of letters, . _ -)")
        if name.endswith(_SIDE_FILES):
            raise BadRequest(f"{dsn!r}: names ending in -wal, -shm or -journal are SQLite's own files")
        if name in self._dbs:
            raise Conflict(f"database {name!r} already exists", database=name)
        for ident in self._dbs:
            if ident.casefold() == name.casefold():
                raise Conflict(
                    f"{name!r} differs only in case from the database {ident!r} served here",
                    database=ident,
                    hint="names that differ only in case are one file on some file systems",
                )

    def _make_file(self, dsn: str, path: Path) -> None:
        """Make (or find) the database file without following a link, and make sure it is not another name
        of a database served."""
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            info = None
        if info is not None and stat.S_ISLNK(info.st_mode):
            raise BadRequest(f"{dsn!r}: {path} is a symbolic link; links in --create-db-dir are not followed")
        if info is not None and not stat.S_ISREG(info.st_mode):
            raise BadRequest(f"{dsn!r}: {path} exists and is not a regular file")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        except OSError as e:
            raise BadRequest(f"{dsn!r}: cannot create {path}: {e.strerror}") from e
        os.close(fd)
        served = self._same_file_served(path)
        if served is not None:
            if info is None:
                os.remove(path)
            raise Conflict(f"{path} is the file of the database {served!r} served here", database=served)

    def _same_file_served(self, path: Path) -> str | None:
        """The id of the served database whose file ``path`` is (by device and inode), if any."""
        try:
            mine = os.stat(path)
        except OSError:
            return None
        for ident, db in self._dbs.items():
            if db.spec.memory:
                continue
            with contextlib.suppress(OSError):
                theirs = os.stat(db.spec.path)
                if (theirs.st_dev, theirs.st_ino) == (mine.st_dev, mine.st_ino):
                    return ident
        return None

    def delete(self, ident: str) -> None:
        """Close a database; delete its files only if it was created over the API."""
        db = self.get(ident)
        if ident not in self._created:
            raise Conflict(
                f"database {ident!r} was given on the command line and cannot be deleted over the API",
                hint="stop the node and start it without this database",
            )
        del self._dbs[ident]
        self._created.discard(ident)
        db.close()
        if not db.spec.memory:
            for suffix in ("", *_SIDE_FILES):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(db.spec.path + suffix)
        log.info("deleted database %s", ident)

    def close(self) -> None:
        for db in self._dbs.values():
            db.close()
        self._dbs.clear()


def _is_sqlite_file(path: Path) -> bool:
    if not path.is_file() or path.name.endswith(_SIDE_FILES):
        return False
    try:
        with path.open("rb") as f:
            return f.read(16) == _SQLITE_MAGIC
    except OSError:
        return False
