"""What an embedding application plugs into a node's replication: go-ha's pluggable parts, in Python shape.

A ``Node`` runs, for each replicated database, a *publisher* (its committed change sets go to the log), a
*subscriber* (the log's change sets are applied here) and a *snapshotter* (snapshots of the database are
stored for nodes that join later). ``Plugins`` chooses each of them, and the hooks around applying:

- ``publisher``: ``"nats"`` (the log: JetStream with NATS, a local log without; the default), ``"outbox"``
  (the same log, asynchronously: ``--async-replication``) or ``"none"`` (no log: go-ha's
  ``disablePublisher``; the node's writes stay here). ``cdc``: further publishers every committed change
  set goes to as well, such as ``JSONLinesPublisher`` (a JSON-lines CDC feed to a file or stdout); with
  ``publisher="none"`` they are the only ones.
- ``subscriber=False`` (go-ha's ``disableSubscriber``): the node publishes but applies nothing from the
  others. It diverges from them by design: for an application that only feeds the cluster.
- ``snapshotter=False`` (``disableDBSnapshotter``): this node takes no snapshots and answers no snapshot
  request; it still installs the others' snapshots when it needs one.
- ``auto_start=False`` (``autoStart``): ``Node.start`` opens the databases and publishes their writes, but
  subscribers and snapshotter wait for ``Node.start_replication()``.
- ``interceptor`` (a ``ChangeSetInterceptor`` object) and ``apply_strategy`` (an ``ApplyStrategy``): hooks
  around, and in place of, applying another node's change set (see ``changes/store.py``).
- ``log_driver``: the replication log by its name in ``replication/drivers.py`` (a ``Replicator`` of the
  application's own, registered there); by default the configuration chooses.

``Plugins.from_config`` gives what a ``sqlite-ha serve`` node runs: everything on, the interceptor and apply
strategy its configuration names as ``module:object``.
"""

from __future__ import annotations

import importlib
import inspect
import io
import logging
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol, cast, runtime_checkable

from sqlite_ha.errors import ConfigError

if TYPE_CHECKING:
    from sqlite_ha.changes.changeset import ChangeSet
    from sqlite_ha.changes.store import ApplyStrategy, ChangeSetInterceptor
    from sqlite_ha.config import Config

log = logging.getLogger(__name__)

LogPublisher = Literal["nats", "outbox", "none"]
LOG_PUBLISHERS: tuple[str, ...] = ("nats", "outbox", "none")


@runtime_checkable
class ChangeSetPublisher(Protocol):
    """Told of every change set committed on this node, in commit order, right after its COMMIT (go-ha's
    ``CDCPublisher``). ``payload`` is the change set in the CDC format (``replication/codec.py``,
    docs/cdc.md). It runs on the database's writer, before the next transaction commits: keep it short. An
    exception is logged and counted (the transaction is committed: nothing undoes it); a crash between the
    COMMIT and the call loses that call."""

    def publish(self, cs: ChangeSet, payload: bytes) -> None: ...


class JSONLinesPublisher:
    """Writes each committed change set as one line of JSON (the CDC message, see docs/cdc.md) to a stream
    or a file, flushed at once: a CDC feed for another program (``tail -f``, a log shipper). ``target`` is a
    text or binary stream (``sys.stdout``), a path (appended to; created if missing), or ``"-"`` for
    standard output. Thread-safe: several databases may share one."""

    def __init__(self, target: IO[str] | IO[bytes] | str | Path) -> None:
        self._owned: IO[bytes] | None = None
        self._path: Path | None = None  # a file of ours: opened again after ``close`` (a node restarted)
        self._stream: IO[str] | IO[bytes]
        if isinstance(target, str | Path):
            if str(target) == "-":
                self._stream = sys.stdout
                self.name = "stdout"
            else:
                self._path = Path(target)
                self._stream = self._open()
                self.name = str(target)
        else:
            self._stream = target
            self.name = getattr(target, "name", type(target).__name__)
        self._text = isinstance(self._stream, io.TextIOBase)
        self._lock = threading.Lock()
        self.lines = 0  # change sets written

    def _open(self) -> IO[bytes]:
        assert self._path is not None
        try:
            self._owned = open(self._path, "ab")  # noqa: SIM115 (closed by ``close``)
        except OSError as e:
            raise ConfigError("publisher", f"cannot open {self._path} for the JSON lines: {e}") from e
        return self._owned

    def publish(self, cs: ChangeSet, payload: bytes) -> None:
        with self._lock:
            if self._path is not None and self._owned is None:
                self._stream = self._open()
            if self._text:
                cast("IO[str]", self._stream).write(payload.decode() + "\n")
            else:
                cast("IO[bytes]", self._stream).write(payload + b"\n")
            self._stream.flush()
            self.lines += 1

    def close(self) -> None:
        """Close the file this publisher opened (a stream it was given stays open: it is the caller's)."""
        with self._lock:
            if self._owned is not None:
                self._owned.close()
                self._owned = None

    def __repr__(self) -> str:
        return f"JSONLinesPublisher({self.name!r})"


class CDCFanout:
    """One database's CDC publishers, told of each change set committed there (``Capture.committed``). A
    failing publisher must not fail the write path (the transaction is committed): logged and counted."""

    def __init__(self, database: str, publishers: Sequence[ChangeSetPublisher]) -> None:
        self.database = database
        self.publishers = tuple(publishers)
        self.failures = 0

    def publish(self, cs: ChangeSet, payload: bytes) -> None:
        for publisher in self.publishers:
            try:
                publisher.publish(cs, payload)
            except Exception:
                self.failures += 1
                log.exception(
                    "database %s: CDC publisher %r failed on change set %s",
                    self.database,
                    publisher,
                    cs.msg_id,
                )

    def status(self) -> dict[str, Any]:
        return {"publishers": [repr(p) for p in self.publishers], "failures": self.failures}


@dataclass(frozen=True, kw_only=True)
class Plugins:
    """The parts of a node's replication an application chooses (see the module's docstring)."""

    publisher: LogPublisher = "nats"
    cdc: tuple[ChangeSetPublisher, ...] = ()
    subscriber: bool = True
    snapshotter: bool = True
    auto_start: bool = True
    interceptor: ChangeSetInterceptor | None = None
    apply_strategy: ApplyStrategy | None = None
    # The replication driver, by its name in ``replication/drivers.py`` (None: the configuration's choice,
    # jetstream with NATS and local without): a log of the application's own, registered there.
    log_driver: str | None = None

    def __post_init__(self) -> None:
        if self.publisher not in LOG_PUBLISHERS:
            raise ConfigError(
                "publisher", f"{self.publisher!r} is not one of: {', '.join(LOG_PUBLISHERS)} (or jsonl:PATH)"
            )
        for p in self.cdc:
            if not callable(getattr(p, "publish", None)):
                raise ConfigError("publisher", f"{p!r} has no publish(cs, payload) method")
        if self.interceptor is not None:
            check_interceptor(self.interceptor, repr(self.interceptor))
        if self.apply_strategy is not None and not callable(self.apply_strategy):
            raise ConfigError("applyStrategy", f"{self.apply_strategy!r} is not callable")

    @classmethod
    def from_config(cls, config: Config) -> Plugins:
        """What a ``sqlite-ha serve`` node runs: the log publisher (``outbox`` with --async-replication),
        subscriber and snapshotter on, the --interceptor and --apply-strategy it names."""
        return cls().completed(config)

    def completed(self, config: Config) -> Plugins:
        """These plugins, with what they leave open taken from ``config``: the interceptor and apply strategy
        named there, and ``outbox`` for --async-replication."""
        changes: dict[str, Any] = {}
        if self.interceptor is None and config.interceptor:
            changes["interceptor"] = load_interceptor(config.interceptor)
        if self.apply_strategy is None and config.apply_strategy:
            changes["apply_strategy"] = load_apply_strategy(config.apply_strategy)
        if self.publisher == "nats" and config.async_replication:
            changes["publisher"] = "outbox"
        if self.publisher == "outbox" and config.writer_mode != "leaderless":
            raise ConfigError(
                "publisher",
                f"outbox (asynchronous) cannot be combined with writer mode {config.writer_mode}: a writer "
                "that answers before the log took its write cannot be fenced",
            )
        if self.publisher == "none" and config.writer_mode != "leaderless":
            raise ConfigError(
                "disablePublisher",
                f"a node that publishes nothing cannot take part in writer mode {config.writer_mode}",
            )
        if not self.subscriber and config.writer_mode != "leaderless":
            raise ConfigError(
                "disableSubscriber",
                f"writer mode {config.writer_mode} needs every node to read the log (a writer starts from "
                "its latest state)",
            )
        return replace(self, **changes) if changes else self

    def key(self) -> tuple[Any, ...]:
        """What tells two plug-in choices apart, objects by identity (the driver's cache of connectors)."""
        return (
            self.publisher,
            tuple(id(p) for p in self.cdc),
            self.subscriber,
            self.snapshotter,
            self.auto_start,
            id(self.interceptor),
            id(self.apply_strategy),
            self.log_driver,
        )

    @property
    def publishes(self) -> bool:
        """Whether change sets go to the replication log."""
        return self.publisher != "none"


# What ``module:object`` and ``jsonl:PATH`` texts gave, once per process: the same text is the same object,
# so that connections opened with one DSN share one node (the driver caches its connectors by plug-ins).
_LOADED: dict[str, Any] = {}
_JSON_LINES: dict[str, JSONLinesPublisher] = {}
_LOADING = threading.Lock()


def import_object(spec: str, setting: str) -> Any:
    """Import ``module:object`` (``object`` may be dotted); a class is instantiated without arguments. The
    same text gives the same object for the life of the process."""
    with _LOADING:
        if spec not in _LOADED:
            _LOADED[spec] = _import(spec, setting)
        return _LOADED[spec]


def _import(spec: str, setting: str) -> Any:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(setting, f"{spec!r} is not module:object (example: myapp.hooks:interceptor)")
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # an import error of any kind is the user's configuration to fix
        raise ConfigError(setting, f"cannot import {module_name!r}: {e}") from e
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ConfigError(setting, f"{module_name!r} has no {attr!r}")
    if inspect.isclass(obj):
        obj = obj()
    return obj


def check_interceptor(obj: object, what: str, setting: str = "interceptor") -> None:
    for method in ("before_apply", "after_apply"):
        if not callable(getattr(obj, method, None)):
            raise ConfigError(setting, f"{what} has no {method}() method")


def load_interceptor(spec: str, setting: str = "--interceptor") -> ChangeSetInterceptor:
    """The ``ChangeSetInterceptor`` that ``module:object`` names (a class is instantiated)."""
    obj = import_object(spec, setting)
    check_interceptor(obj, spec, setting)
    return obj  # type: ignore[no-any-return]


def load_apply_strategy(spec: str, setting: str = "--apply-strategy") -> ApplyStrategy:
    """The ``ApplyStrategy`` that ``module:object`` names (a class is instantiated: its instances are
    called)."""
    obj = import_object(spec, setting)
    if not callable(obj):
        raise ConfigError(setting, f"{spec} is not callable")
    return obj  # type: ignore[no-any-return]


def json_lines(target: str) -> JSONLinesPublisher:
    """The ``JSONLinesPublisher`` of a path (or ``-``) given as text: one per target for the process."""
    key = "-" if target == "-" else str(Path(target).resolve())
    with _LOADING:
        if key not in _JSON_LINES:
            _JSON_LINES[key] = JSONLinesPublisher(target)
        return _JSON_LINES[key]


def publisher_from_text(
    text: str, setting: str = "publisher"
) -> tuple[LogPublisher, tuple[ChangeSetPublisher, ...]]:
    """A publisher option as text: a comma-separated list of ``nats``, ``outbox``, ``none``,
    ``jsonl`` (standard output) and ``jsonl:PATH``. JSON lines alone publish to no log (``jsonl`` is
    ``none,jsonl``); ``nats,jsonl:PATH`` does both."""
    log_publisher: str | None = None
    cdc: list[ChangeSetPublisher] = []
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        kind, _, where = part.partition(":")
        if kind == "jsonl":
            cdc.append(json_lines(where or "-"))
        elif part in LOG_PUBLISHERS:
            if log_publisher is not None and log_publisher != part:
                raise ConfigError(setting, f"{log_publisher} and {part} are two log publishers: give one")
            log_publisher = part
        else:
            raise ConfigError(
                setting, f"{part!r} is not a publisher (nats, outbox, none, jsonl or jsonl:PATH)"
            )
    if log_publisher is None:
        log_publisher = "none" if cdc else "nats"
    return log_publisher, tuple(cdc)  # type: ignore[return-value]
