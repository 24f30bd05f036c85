"""The databases a node serves, by id, in the order they were given (the first one is the default)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from sqlite_ha.db.database import Database, DatabaseOptions
from sqlite_ha.db.dsn import DatabaseSpec, parse_dsn
from sqlite_ha.errors import BadRequest, ConfigError, Conflict, DatabaseNotFound, StatementNotAllowed

log = logging.getLogger(__name__)

_SQLITE_MAGIC = b"SQLite format 3\x00"
_SIDE_FILES = ("-wal", "-shm", "-journal")


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
        name, _, query = (dsn[5:] if dsn.startswith("file:") else dsn).partition("?")
        if "/" in name or "\\" in name or name.startswith("."):
            raise BadRequest(f"{dsn!r}: give a plain file name; databases are created in --create-db-dir")
        if name in self._dbs:
            raise Conflict(f"database {name!r} already exists", database=name)
        try:
            target = f"file:{self._create_dir / name}" + (f"?{query}" if query else "")
            spec = parse_dsn(target, memory=self._memory)
        except ConfigError as e:
            raise BadRequest(f"{dsn!r}: {e.message.split(': ', 1)[-1]}") from None
        self._create_dir.mkdir(parents=True, exist_ok=True)
        db = self._add(spec)
        self._created.add(spec.id)
        return db

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
