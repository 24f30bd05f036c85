"""Hooks named as ``module:object`` by the driver tests."""

from __future__ import annotations

from typing import Any


class Recorder:
    """An interceptor that records what it saw and skips change sets touching table ``skipme``."""

    def __init__(self) -> None:
        self.before: list[Any] = []
        self.after: list[tuple[Any, BaseException | None]] = []

    def before_apply(self, cs: Any, conn: Any) -> bool:
        self.before.append(cs)
        return any(ch.table == "skipme" for ch in cs.changes)

    def after_apply(self, cs: Any, conn: Any, error: BaseException | None) -> None:
        self.after.append((cs, error))


def only_t(cs: Any, conn: Any, lww: Any) -> Any:
    """An apply strategy: last-writer-wins for table ``t``, everything else is not applied."""
    if all(ch.table == "t" for ch in cs.changes) and not cs.ddl:
        return lww()
    if cs.ddl:
        return lww()
    return None
