"""Values of every supported type, written and read through real clients, equal to what PostgreSQL 15 gives.

Random values (a seeded generator: a failure prints its seed) plus the edge cases of each type go into the
same table on a node and on the session's real PostgreSQL, through psycopg in text and in binary format
and through asyncpg (binary); every reader (psycopg text, psycopg binary, asyncpg) must then get from the
node exactly what it gets from PostgreSQL. node-postgres (text) writes and reads rows of its own the same
way (``node_values.js``). Input texts of dates and times (offsets, 'T', zone names, the
special words, garbage) must give the same value or the same SQLSTATE. Where sqlite-ha differs on purpose
(docs/pg.md, Types), the clear error is asserted instead.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import os
import random
import string
import subprocess
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import asyncpg
import psycopg
import pytest
from psycopg.types.json import Json, Jsonb

from sqlite_ha.testing import NodeProcess, free_port
from sqlite_ha.testing_pg import PostgresServer
from tests.conftest import NodeFactory

PASSWORD = "values pass"
SEED = int(os.environ.get("PG_VALUES_SEED", random.randrange(2**32)))

COLUMNS = (
    ("b", "boolean"),
    ("i2", "smallint"),
    ("i4", "integer"),
    ("i8", "bigint"),
    ("f4", "real"),
    ("f8", "double precision"),
    ("n", "numeric(12,3)"),
    ("nu", "numeric"),
    ("t", "text"),
    ("vc", "varchar(20)"),
    ("by", "bytea"),
    ("d", "date"),
    ("tm", "time"),
    ("ts", "timestamp"),
    ("tz", "timestamptz"),
    ("u", "uuid"),
    ("iv", "interval"),
    ("j", "json"),
    ("jb", "jsonb"),
)
CREATE = "CREATE TABLE vals (id bigint PRIMARY KEY, " + ", ".join(f"{c} {t}" for c, t in COLUMNS) + ")"
INSERT = f"INSERT INTO vals VALUES ({', '.join(['%s'] * (len(COLUMNS) + 1))})"
INSERT_ASYNCPG = f"INSERT INTO vals VALUES ({', '.join(f'${i}' for i in range(1, len(COLUMNS) + 2))})"
SELECT = "SELECT * FROM vals ORDER BY id"


@pytest.fixture
def pg_node(node_factory: NodeFactory) -> NodeProcess:
    port = free_port()
    node = node_factory(args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD], nats_port=None)
    node.pg_port = port  # type: ignore[attr-defined]
    return node


def node_dsn(node: NodeProcess) -> str:
    return f"postgresql://ha:{quote(PASSWORD)}@127.0.0.1:{node.pg_port}/app"  # type: ignore[attr-defined]


@pytest.fixture
def real_pg(postgres: PostgresServer) -> Iterator[str]:
    """A fresh database of the session's PostgreSQL 15, with TimeZone UTC as the node's sessions have."""
    name = f"vals_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    with psycopg.connect(postgres.dsn(name), autocommit=True) as c:
        c.execute(f"ALTER DATABASE {name} SET timezone TO 'UTC'")
    yield postgres.url(name)
    with psycopg.connect(postgres.dsn(), autocommit=True) as admin:
        admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


# ---------------------------------------------------------------------------------------- values
def _text(rng: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + " '\"\\,{}[]\t\n" + "éß漢字🙂\u00a0"
    return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))


def _json(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(7 if depth < 2 else 4)
    if kind == 0:
        return rng.randrange(-(10**12), 10**12)
    if kind == 1:
        return rng.choice([0.5, -2.25, 1e-7, 3.0, 12345.678])
    if kind == 2:
        return _text(rng)
    if kind == 3:
        return rng.choice([True, False, None])
    if kind in (4, 5):
        return {_text(rng)[:8]: _json(rng, depth + 1) for _ in range(rng.randrange(4))}
    return [_json(rng, depth + 1) for _ in range(rng.randrange(4))]


def _stamp(rng: random.Random) -> dt.datetime:
    micro = rng.choice([0, 0, 500000, 123456, 1, 999999, rng.randrange(1_000_000)])
    return dt.datetime(rng.randrange(1, 10000), rng.randrange(1, 13), rng.randrange(1, 29), rng.randrange(24),
                       rng.randrange(60), rng.randrange(60), micro)  # fmt: skip


FLOAT8_EDGES = [math.inf, -math.inf, math.nan, 0.0, 5e-324, 1.7976931348623157e308, 0.1 + 0.2]


def random_row(rng: random.Random, row_id: int) -> tuple[Any, ...]:
    def maybe(value: Callable[[], Any]) -> Any:
        return None if rng.random() < 0.08 else value()

    def numeric(scale: int, digits: int) -> Decimal:
        """At most ``digits`` significant digits, at most ``scale`` of them after the point."""
        places = rng.randrange(0, scale + 1)
        n = rng.randrange(1, digits - scale + places + 1)
        return Decimal(rng.randrange(-(10**n) + 1, 10**n)).scaleb(-places)

    offset = dt.timezone(dt.timedelta(minutes=15 * rng.randrange(-48, 57)))
    return (
        row_id,
        maybe(lambda: rng.random() < 0.5),
        maybe(lambda: rng.choice([-(2**15), 2**15 - 1, 0, rng.randrange(-(2**15), 2**15)])),
        maybe(lambda: rng.choice([-(2**31), 2**31 - 1, rng.randrange(-(2**31), 2**31)])),
        maybe(lambda: rng.choice([-(2**63), 2**63 - 1, rng.randrange(-(2**63), 2**63)])),
        maybe(lambda: rng.choice([1.1, 0.0, 3.4e38, 1e-30, round(rng.uniform(-1e6, 1e6), rng.randrange(6))])),
        maybe(lambda: rng.choice([*FLOAT8_EDGES, rng.uniform(-1e300, 1e300), rng.uniform(-1, 1)])),
        maybe(lambda: numeric(3, 12)),  # numeric(12,3)
        maybe(lambda: rng.choice([Decimal("NaN"), numeric(0, 15), numeric(5, 15), Decimal("70.40")])),
        maybe(lambda: _text(rng)),
        maybe(lambda: _text(rng)[:20]),
        maybe(lambda: rng.randbytes(rng.randrange(0, 40))),
        maybe(lambda: _stamp(rng).date()),
        maybe(lambda: _stamp(rng).time()),
        maybe(lambda: _stamp(rng)),
        maybe(lambda: _stamp(rng).replace(year=rng.randrange(2, 9999), tzinfo=offset)),
        maybe(lambda: uuid.UUID(int=rng.getrandbits(128))),
        maybe(
            lambda: rng.choice(
                [
                    dt.timedelta(0),
                    dt.timedelta(days=-1, hours=3),
                    dt.timedelta(microseconds=1),
                    dt.timedelta(days=rng.randrange(-400, 400), microseconds=rng.randrange(86400 * 10**6)),
                ]
            )
        ),
        maybe(lambda: _json(rng)),
        maybe(lambda: _json(rng)),
    )


def rows(seed: int, start: int, count: int) -> list[tuple[Any, ...]]:
    rng = random.Random(seed)
    return [random_row(rng, start + i) for i in range(count)]


def psycopg_params(row: tuple[Any, ...]) -> tuple[Any, ...]:
    *head, j, jb = row
    return (*head, None if j is None else Json(j), None if jb is None else Jsonb(jb))


def asyncpg_params(row: tuple[Any, ...]) -> tuple[Any, ...]:
    import json

    *head, j, jb = row
    return (*head, None if j is None else json.dumps(j), None if jb is None else json.dumps(jb))


# ---------------------------------------------------------------------------------------- clients
def write(dsn: str, seed: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(CREATE)
        c.cursor().executemany(INSERT, [psycopg_params(r) for r in rows(seed, 0, 30)])
        c.cursor(binary=True).executemany(INSERT, [psycopg_params(r) for r in rows(seed + 1, 100, 30)])

    async def with_asyncpg() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.executemany(INSERT_ASYNCPG, [asyncpg_params(r) for r in rows(seed + 2, 200, 30)])
        finally:
            await conn.close()

    asyncio.run(with_asyncpg())


def comparable(value: Any) -> Any:
    """NaN equal to NaN; a number's text kept (Decimal('1.50') and Decimal('1.5') are == but print apart)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, float):
        return (value, math.copysign(1, value))
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def read(dsn: str) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    with psycopg.connect(dsn, autocommit=True) as c:
        for name, binary in (("psycopg text", False), ("psycopg binary", True)):
            got = c.cursor(binary=binary).execute(SELECT).fetchall()
            out[name] = [tuple(comparable(v) for v in r) for r in got]

    async def with_asyncpg() -> list[tuple[Any, ...]]:
        conn = await asyncpg.connect(dsn)
        try:
            return [tuple(comparable(v) for v in r) for r in await conn.fetch(SELECT)]
        finally:
            await conn.close()

    out["asyncpg"] = asyncio.run(with_asyncpg())
    return out


def test_values_round_trip_as_in_postgresql(pg_node: NodeProcess, real_pg: str) -> None:
    print(f"PG_VALUES_SEED={SEED}")
    write(real_pg, SEED)
    write(node_dsn(pg_node), SEED)
    expected, got = read(real_pg), read(node_dsn(pg_node))
    for reader, want in expected.items():
        assert len(got[reader]) == len(want) == 90
        for want_row, got_row in zip(want, got[reader], strict=True):
            for (name, _), w, g in zip((("id", ""), *COLUMNS), want_row, got_row, strict=True):
                if name == "nu" and isinstance(w, str) and isinstance(g, str) and w != "NaN":
                    # unconstrained numeric: the value, not the input's trailing zeros (docs/pg.md, Types)
                    w, g = Decimal(w).normalize(), Decimal(g).normalize()
                assert g == w, f"{reader}, row {want_row[0]}, column {name}: {g!r} != {w!r} (seed {SEED})"


# ---------------------------------------------------------------------------------------- input texts
TEXT_INPUTS = {
    "timestamptz": [
        "2024-01-02 03:04:05+02", "2024-01-02T03:04:05.123456Z", "2024-01-02 03:04:05.5 +05:30",
        "2024-01-02 03:04:05-0800", "2024-06-01 12:00:00 Europe/Paris", "2024-01-02", "epoch", "infinity",
        "-infinity", "2024-01-02 03:04:05.1234567+00", "2024-02-29 24:00:00", "garbage", "2024-13-01",
        "2023-02-29 10:00", "2024-01-02 25:00", "2024-01-02 03:04:05 Mars/Olympus", "20240102",
        "1999-01-08 04:05:06 PST", "2024-01-02 03:04:05+16", "2024-01-02 03:04:05+15:59", " Infinity ",
        "2024-01-02 3:04:05 utc",
    ],
    "timestamp": [
        "2024-01-02 03:04:05", "2024-01-02T03:04:05.000001", "2024-01-02 03:04:05+02", "1999-12-31",
        "0001-01-01 00:00:00", "9999-12-31 23:59:59.999999", "epoch", "infinity", "garbage", "2024-01-32",
        "2024-01-02 03:04:05.9999995",
    ],
    "date": ["2024-02-29", "2023-02-29", "epoch", "infinity", "20240102", "2024-01-02 10:00", "nope"],
    "time": ["03:04:05", "03:04:05.123456", "23:59:59.9999999", "24:00:00", "allballs", "3:04", "25:00", "x"],
    "timetz": [
        "03:04:05+02", "03:04:05.123456-05:30", "12:57:18 Z", "12:57:18 UTC", "10:00",
        "2024-01-02 03:04:05-08", "23:59:59.999999+15:59", "03:04:05+16", "25:00+02", "garbage",
        "allballs", "03:04:05+0530",
    ],
}  # fmt: skip


def answer(conn: psycopg.Connection[Any], sql: str, params: tuple[Any, ...] = ()) -> tuple[str, Any]:
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            row = cur.fetchone()
            return "ok", None if row is None else comparable(row[0])
    except psycopg.Error as e:
        return "error", e.sqlstate


def test_date_time_texts_as_in_postgresql(pg_node: NodeProcess, postgres: PostgresServer) -> None:
    """Literal casts and text parameters of every form: the same value, or the same SQLSTATE."""
    with (
        psycopg.connect(postgres.dsn(), autocommit=True) as real,
        psycopg.connect(node_dsn(pg_node), autocommit=True) as ours,
    ):
        real.execute("SET TIME ZONE 'UTC'")
        differences = []
        for type_name, texts in TEXT_INPUTS.items():
            for text in texts:
                literal = "'" + text.replace("'", "''") + f"'::{type_name}"
                for sql, params in ((f"SELECT {literal}", ()), (f"SELECT %s::{type_name}", (text,))):
                    got, want = answer(ours, sql, params), answer(real, sql, params)
                    if got != want:
                        differences.append(f"{sql} {params}: {got} != {want}")
        assert not differences, "\n".join(differences)
        # what sqlite-ha cannot store: a clear error, never a wrong value
        for sql in ("SELECT '0044-03-15 BC'::date", "SELECT '10000-01-01'::timestamp"):
            assert answer(ours, sql) == ("error", "22008"), sql


def test_deliberate_limits_are_clear_errors(pg_node: NodeProcess) -> None:
    """An int4 column holding more than int32 (SQLite integers are 64-bit) answers 22003 in text and in
    binary format; a numeric with more significant digits than a double keeps is refused with 22003."""
    with psycopg.connect(node_dsn(pg_node), autocommit=True) as c:
        c.execute("CREATE TABLE lim (id bigint PRIMARY KEY, small integer, amount numeric)")
        c.execute("INSERT INTO lim VALUES (1, 3000000000, 1)")  # SQLite stores it: reading must not lie
        for binary in (False, True):
            with pytest.raises(psycopg.errors.NumericValueOutOfRange):
                c.cursor(binary=binary).execute("SELECT small FROM lim").fetchall()
        with pytest.raises(psycopg.errors.NumericValueOutOfRange) as info:
            c.execute("INSERT INTO lim VALUES (2, 1, %s)", (Decimal("12345678901234567.891"),))
        assert "cannot be stored exactly" in str(info.value)
        c.execute("INSERT INTO lim VALUES (3, 1, %s)", (Decimal("123456789012.345"),))
        assert c.execute("SELECT amount FROM lim WHERE id = 3").fetchone() == (Decimal("123456789012.345"),)


# ---------------------------------------------------------------------------------------- node-postgres
NOT_FINITE = {math.inf: "Infinity", -math.inf: "-Infinity"}


def node_params(row: tuple[Any, ...]) -> list[Any]:
    """A row as node-postgres would be given it from JSON: numbers, strings (ISO dates, an offset with a
    timestamptz, big integers and decimals as text), Buffers and JSON documents."""

    def one(name: str, value: Any) -> Any:
        if name in ("j", "jb") and value is not None:
            return {"json": value}
        if value is None or isinstance(value, bool | str):
            return value
        if isinstance(value, int):
            return value if abs(value) < 2**53 else str(value)
        if isinstance(value, float):
            return (
                value
                if math.isfinite(value)
                else {math.inf: "Infinity", -math.inf: "-Infinity"}.get(value, "NaN")
            )
        if isinstance(value, Decimal | uuid.UUID):
            return str(value)
        if isinstance(value, bytes):
            return {"hex": value.hex()}
        if isinstance(value, dt.timedelta):
            return f"{value.days} days {value.seconds} seconds {value.microseconds} microseconds"
        if isinstance(value, dt.date | dt.time):
            return value.isoformat()
        raise TypeError(f"no JSON form for {value!r}")

    return [one(name, v) for (name, _), v in zip((("id", ""), *COLUMNS), row, strict=True)]


def node_values(url: str, seed: int) -> list[list[Any]]:
    from tests.e2e.test_node_postgres import MODULES, node_postgres

    spec = {"create": CREATE, "insert": INSERT_ASYNCPG, "select": SELECT}
    spec["rows"] = [node_params(r) for r in rows(seed, 300, 30)]  # type: ignore[assignment]
    env = {**os.environ, "NODE_PATH": str(MODULES), "TZ": "UTC"}
    script = Path(__file__).with_name("node_values.js")
    done = subprocess.run(
        [node_postgres(), str(script), url],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    result: list[list[Any]] = json.loads(done.stdout)
    return result


def test_values_through_node_postgres(pg_node: NodeProcess, real_pg: str) -> None:
    """Random rows written by node-postgres (text) and read back by it: the same JSON as from PostgreSQL."""
    want, got = node_values(real_pg, SEED), node_values(node_dsn(pg_node), SEED)
    assert len(got) == len(want) == 30
    nu = [name for name, _ in COLUMNS].index("nu") + 1
    for want_row, got_row in zip(want, got, strict=True):
        for i, (w, g) in enumerate(zip(want_row, got_row, strict=True)):
            if i == nu and w is not None and g is not None and w.get("string") not in (None, "NaN"):
                w, g = Decimal(w["string"]).normalize(), Decimal(g["string"]).normalize()  # see above
            assert g == w, f"row {want_row[0]}, column {i}: {g!r} != {w!r} (seed {SEED})"
