"""SQLSTATE codes for sqlite-ha errors, so that PostgreSQL clients and ORMs react to them as to PostgreSQL's
(SQLAlchemy raises IntegrityError for class 23, psycopg maps codes to exception classes)."""

from __future__ import annotations

from sqlite_ha.errors import HAError

# SQLite extended result codes → SQLSTATE
_BY_SQLITE_CODE = {
    "SQLITE_CONSTRAINT_UNIQUE": "23505",
    "SQLITE_CONSTRAINT_PRIMARYKEY": "23505",
    "SQLITE_CONSTRAINT_NOTNULL": "23502",
    "SQLITE_CONSTRAINT_FOREIGNKEY": "23503",
    "SQLITE_CONSTRAINT_CHECK": "23514",
    "SQLITE_CONSTRAINT_TRIGGER": "23000",
    "SQLITE_CONSTRAINT": "23000",
    "SQLITE_TOOBIG": "54000",
    "SQLITE_READONLY": "25006",
    "SQLITE_MISMATCH": "42804",
    "SQLITE_RANGE": "08P01",
}

# words of SQLite's messages (SQLITE_ERROR covers many things) → SQLSTATE
_BY_MESSAGE = (
    ("no such table", "42P01"),
    ("no such view", "42P01"),
    ("no such column", "42703"),
    ("no such function", "42883"),
    ("no such index", "42704"),
    ("no such savepoint", "3B001"),
    ("syntax error", "42601"),
    ("incomplete input", "42601"),
    ("unrecognized token", "42601"),
    ("already exists", "42P07"),
    ("ambiguous column", "42702"),
    ("datatype mismatch", "42804"),
    ("division by zero", "22012"),
    ("integer overflow", "22003"),
    ("too many terms", "54001"),
    ("is not supported", "0A000"),  # a translation's function refusing at run time (pg_at_utc)
)

# sqlite-ha error codes → SQLSTATE
_BY_CODE = {
    "disk_full": "53100",
    "invalid_params": "22P02",
    "bad_request": "08P01",
    "invalid_json": "08P01",
    "statement_not_allowed": "42501",
    "not_supported": "0A000",
    "permission_denied": "42501",
    "query_timeout": "57014",
    "result_too_large": "54000",
    "busy": "55P03",
    "not_ready": "57P03",
    "no_rowid_slot": "57P03",
    "keys_exhausted": "54000",
    "not_replicating": "57P03",
    "replication_gap": "57P03",
    "replication_error": "57P03",
    "replication_timeout": "57P03",
    "stale_read": "57014",
    "log_unreachable": "57P03",
    "no_writer": "57P03",
    "not_writer": "57P03",
    "fenced": "40001",
    "write_outcome_unknown": "08007",
    "min_seq_beyond_log": "22023",
    "payload_too_large": "54000",
    "database_not_found": "3D000",
    "transaction_aborted": "40P01",
    "conflict": "55000",
    "not_found": "42704",
}


def sqlstate(error: HAError) -> str:
    code = error.code
    given = error.fields.get("sqlstate")  # an error that knows PostgreSQL's code for itself
    if given is not None:
        return str(given)
    if code == "sql_error":
        sqlite_code = str(error.fields.get("sqlite_code") or "")
        if sqlite_code in _BY_SQLITE_CODE:
            return _BY_SQLITE_CODE[sqlite_code]
        text = error.message.lower()
        for words, state in _BY_MESSAGE:
            if words in text:
                return state
        return "42000" if sqlite_code == "SQLITE_ERROR" else "XX000"
    if code == "invalid_params" and isinstance(error.fields.get("sqlstate"), str):
        return str(error.fields["sqlstate"])  # a function's own: 22007 for a bad timestamp
    return _BY_CODE.get(code, "XX000")
