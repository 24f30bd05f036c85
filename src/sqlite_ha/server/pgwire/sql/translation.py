"""What a translation of PostgreSQL SQL gives the front end, and the error it raises.

Apart from ``dialect`` because both ways of translating build these: the fast path there, and the sqlglot
rewrites of ``rewrites`` (which ``dialect`` imports, so they cannot import ``dialect`` back).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlite_ha.errors import HAError

MAX_PARAM = 32766  # SQLITE_MAX_VARIABLE_NUMBER of current builds
# What now() (and CURRENT_TIMESTAMP) becomes, as sqlglot writes it: the type inference and the column names
# recognise it to give it now()'s type and name back.
NOW_SQL = "DATETIME('now', 'subsec')"


@dataclass(frozen=True, slots=True)
class Translation:
    """The SQLite text to run for one PostgreSQL query string.

    ``translated`` says whether sqlglot rewrote it (False on the fast path, where only ``$n`` changed).
    ``param_types`` has ``param_count`` entries: the PostgreSQL type name (``int4``, ``jsonb``, ``_int4``)
    of each parameter the SQL casts explicitly, else None. ``locks``: a SELECT … FOR UPDATE/SHARE, whose
    row locks the session gives by taking the database's writer (SQLite has no row locks to take).
    """

    sql: str
    param_count: int
    translated: bool
    param_types: tuple[str | None, ...] = ()
    locks: bool = False


class TranslationError(HAError):
    """The statement cannot be expressed in SQLite; the PG server reports it as SQLSTATE 42601, or as the
    ``sqlstate`` given: a literal PostgreSQL itself refuses ('garbage'::timestamp is 22007), in its words."""

    code = "translation_error"

    def __init__(self, reason: str, *, hint: str | None = None, sqlstate: str = "42601") -> None:
        message = reason if sqlstate != "42601" else f"could not translate the statement to SQLite: {reason}"
        super().__init__(message, hint=hint, reason=reason)
        self.reason = reason
        self.sqlstate = sqlstate


def check_param(n: int) -> int:
    if n > MAX_PARAM:  # $0 is left to SQLite, which names it in its own error
        raise TranslationError(f"parameter ${n} is out of range (1 to {MAX_PARAM})")
    return n
