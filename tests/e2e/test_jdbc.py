"""The PostgreSQL JDBC driver's DatabaseMetaData, as GUI tools (DBeaver, DataGrip) call it, against a node and
against a real PostgreSQL 15 holding the same schema: what the tools show must be the same, and the few
differences are asserted as the documented ones.

The driver is Debian's ``libpostgresql-jdbc-java`` (``.ci/run`` installs it); the program is
``jdbc/Metadata.java``, run as a single-file Java program, printing JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from sqlite_ha.testing import NodeProcess, free_port
from sqlite_ha.testing_pg import DEFAULT_BINDIR, PostgresServer
from tests.conftest import NodeFactory

JAR = Path("/usr/share/java/postgresql.jar")
PROGRAM = Path(__file__).parent / "jdbc" / "Metadata.java"
PASSWORD = "jdbc pass"
TABLES = ("authors", "books", "tags")

SCHEMA = """
CREATE TABLE authors (
  id BIGINT PRIMARY KEY,
  name VARCHAR(100) NOT NULL UNIQUE,
  born DATE,
  active BOOLEAN NOT NULL DEFAULT true
);
CREATE TABLE books (
  id BIGINT PRIMARY KEY,
  author_id BIGINT NOT NULL REFERENCES authors(id) ON DELETE CASCADE ON UPDATE RESTRICT,
  title TEXT NOT NULL,
  price NUMERIC(10,2),
  cover BYTEA,
  published TIMESTAMP,
  updated TIMESTAMPTZ,
  meta JSON,
  uid UUID,
  pages INT,
  CONSTRAINT books_title_author UNIQUE (author_id, title)
);
CREATE INDEX books_published_idx ON books (published DESC);
CREATE TABLE tags (
  book_id BIGINT REFERENCES books(id) ON DELETE SET NULL,
  tag VARCHAR(20),
  PRIMARY KEY (book_id, tag)
);
CREATE VIEW cheap_books AS SELECT id, title FROM books WHERE price < 10;
INSERT INTO authors VALUES (1, 'Ann', NULL, true), (2, 'Bob', '1970-01-01', false);
"""


def _metadata(url: str, user: str, password: str) -> dict[str, Any]:
    proc = subprocess.run(
        ["java", "-cp", str(JAR), str(PROGRAM), url, user, password, *TABLES],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    found: dict[str, Any] = json.loads(proc.stdout)
    return found


@pytest.fixture
def pg(node_factory: NodeFactory) -> NodeProcess:
    port = free_port()
    node = node_factory(args=["app.db", "--pg-port", str(port), "--pg-pass", PASSWORD])
    node.pg_port = port  # type: ignore[attr-defined]
    return node


def test_database_metadata_is_what_postgresql_shows(pg: NodeProcess, postgres: PostgresServer) -> None:
    if shutil.which("java") is None or not JAR.exists():
        pytest.fail(f"Java and {JAR} are needed (apt install default-jre-headless libpostgresql-jdbc-java)")
    made = subprocess.run(
        [str(DEFAULT_BINDIR / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-c", SCHEMA],
        env={
            **os.environ,
            "PGHOST": "127.0.0.1",
            "PGPORT": str(pg.pg_port),
            "PGUSER": "ha",  # type: ignore[attr-defined]
            "PGPASSWORD": PASSWORD,
            "PGDATABASE": "app",
            "PGSSLMODE": "disable",
        },
        capture_output=True,
        text=True,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    dbname = f"jdbc_{uuid.uuid4().hex[:10]}"
    postgres.psql(f"CREATE DATABASE {dbname}")
    postgres.psql(SCHEMA, dbname)
    node = _metadata(f"jdbc:postgresql://127.0.0.1:{pg.pg_port}/app?sslmode=disable", "ha", PASSWORD)  # type: ignore[attr-defined]
    real = _metadata(
        f"jdbc:postgresql://127.0.0.1:{postgres.port}/{dbname}?sslmode=disable",
        postgres.user,
        postgres.password,
    )

    # what a tool's navigator shows: schemas, table types, tables and views
    assert node["product"] == "PostgreSQL"
    assert node["major"] == 15
    assert node["product_version"].startswith("15.")
    assert len(node["catalogs"]) == 1
    for key in ("schemas", "table_types", "tables", "procedures", "functions"):
        assert node[key] == real[key], key
    # and per table: columns, keys, indexes, foreign keys with their rules
    for table in TABLES:
        for key in ("columns", "primary_keys", "indexes", "imported_keys", "exported_keys"):
            assert node[f"{key}:{table}"] == real[f"{key}:{table}"], f"{key}:{table}"
    assert node["exported_keys:authors"][0]["DELETE_RULE"] == 0  # cascade
    assert node["imported_keys:books"][0]["UPDATE_RULE"] == 1  # restrict

    # the types a tool offers: the ones a node has, with PostgreSQL's JDBC codes
    real_types = {t["TYPE_NAME"]: t["DATA_TYPE"] for t in real["type_info"]}
    node_types = {t["TYPE_NAME"]: t["DATA_TYPE"] for t in node["type_info"]}
    for name in ("int2", "int4", "int8", "numeric", "float8", "bool", "text", "varchar", "bytea", "date",
                 "timestamp", "timestamptz", "json", "jsonb", "uuid"):  # fmt: skip
        assert node_types[name] == real_types[name], name
    assert set(node_types) <= set(real_types)

    # the session: isolation levels, read-only transactions, the functions tools call
    for key in (
        "isolation_serializable",
        "isolation_read_committed",
        "read_only_read",
        "read_only_write",
        "current_schemas",
        "in_recovery",
        "backend_pid_stable",
        "backend_pid_in_activity",
        "user",
    ):
        assert node[key] == real[key], key
    assert node["read_only_write"] == "25006"
    settings = {s["name"]: s for s in node["settings"]}
    real_settings = {s["name"]: s for s in real["settings"]}
    assert settings.keys() == real_settings.keys()
    assert settings["standard_conforming_strings"] == real_settings["standard_conforming_strings"]
    assert settings["server_version_num"]["setting"].startswith("1500")

    # documented differences: PostgreSQL's own catalogs are not listed as tables of pg_catalog
    assert (node["system_tables"], real["system_tables"]) == (0, 1)
