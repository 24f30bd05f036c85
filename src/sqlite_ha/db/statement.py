"""What a client asks a database to run, and what comes back."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlite_ha.db.authorizer import Permission
from sqlite_ha.db.params import Bindings
from sqlite_ha.db.values import SQLiteValue


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    """``grant``: the permissions of the user who sent it on its database; None runs it unrestricted."""

    sql: str
    bindings: Bindings = None
    grant: Permission | None = None


@dataclass(slots=True, kw_only=True)
class Result:
    """The outcome of one statement.

    ``columns`` is non-empty exactly when SQLite says the prepared statement returns rows (``SELECT``,
    ``WITH``, ``PRAGMA``, ``VALUES``, ``… RETURNING``); otherwise the statement reports ``rows_affected``
    and ``last_insert_id``.
    """

    columns: list[str] = field(default_factory=list)
    types: list[str | None] = field(default_factory=list)
    rows: list[tuple[SQLiteValue, ...]] = field(default_factory=list)
    rows_affected: int = 0
    last_insert_id: int = 0

    @property
    def returns_rows(self) -> bool:
        return bool(self.columns)
