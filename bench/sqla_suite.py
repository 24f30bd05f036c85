"""SQLAlchemy's own dialect compliance suite against a node and against a real PostgreSQL 15, side by side.

    python bench/sqla_suite.py [--cache-dir DIR] [--only postgres|node] [--nats] [--timeout 120]
                               [--show 25] [--json out.json] [-- extra pytest args]

Why: the PostgreSQL wire of a node is meant to be PostgreSQL to its clients. SQLAlchemy's dialect compliance
suite (``test/dialect/test_suite.py`` of its source distribution: some 1,900 tests of types, reflection,
RETURNING, CTEs, upserts, …) was written by people who never heard of sqlite-ha, so it finds what our own
tests do not think of. The number that matters is the node's passes as a share of PostgreSQL's, in the same
run on the same machine.

What runs:

* the source distribution of the installed SQLAlchemy version, fetched once with
  ``pip download --no-binary sqlalchemy --no-deps sqlalchemy==X`` into ``--cache-dir`` and unpacked there;
* a throw-away PostgreSQL 15 (``sqlite_ha.testing_pg.PostgresServer``) and one ``sqlite-ha serve`` node
  (``sqlite_ha.testing.NodeProcess``, ``--pg-port``; without NATS unless ``--nats``) serving ``suite.db``;
* on each, the suite's documented set-up (README.unittests: ``CREATE SCHEMA test_schema`` and
  ``test_schema_2``; a failure there is printed and the run goes on), then
  ``pytest test/dialect/test_suite.py --dburi postgresql+psycopg://…`` in the source tree, with its own
  conftest and requirements, ``--maxfail`` lifted and a per-test timeout.

The suite is run unmodified but for one thing: its session start-up runs ``CREATE EXTENSION IF NOT EXISTS
citext`` and ``hstore`` and aborts the whole run when that fails. A PostgreSQL built without contrib
answers ``58P01`` (``0A000`` from version 16), and a node answers ``0A000 extension "citext" is not
available``: a small pytest plugin written next to the suite (``-p sqla_suite_tolerate``) makes that step
skip a missing extension, as the suite would have to on such a PostgreSQL. No test of
``test/dialect/test_suite.py`` uses either extension.

What is printed: passed, failed, errors and skipped for each side, the node's passes as a share of
PostgreSQL's, the wall time of each run, the tests that pass on PostgreSQL but not on the node grouped by
cause (the exception's first line with numbers and quoted names blurred), and the reverse list. The exit
status is 1 only when a side could not be run at all.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg

from sqlite_ha.testing import NodeProcess, free_port
from sqlite_ha.testing_pg import PostgresServer

USER = "ha"
PASSWORD = "suite-secret"
NODE_DB = "suite"
SCHEMAS = ("test_schema", "test_schema_2")

TOLERATE_PLUGIN = '''\
"""Written by bench/sqla_suite.py: SQLAlchemy's PostgreSQL session start-up creates the citext and hstore
extensions and aborts the run when one is missing. Skip a missing one (58P01 from PostgreSQL 15 without
contrib, 0A000 from 16 and from a sqlite-ha node), as the suite would have to on such a server."""

import pytest

MISSING = {"58P01", "0A000"}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    from sqlalchemy import exc, text
    from sqlalchemy.dialects.postgresql import provision as pg_provision
    from sqlalchemy.testing import provision

    def tolerant(url, engine, follower_ident):
        with engine.connect() as conn:
            for extension, min_version in pg_provision._extensions:
                if conn.dialect.server_version_info < min_version:
                    continue
                try:
                    conn.execute(text(f"CREATE EXTENSION IF NOT EXISTS {extension}"))
                    conn.commit()
                except exc.DBAPIError as e:
                    conn.rollback()
                    if getattr(e.orig, "sqlstate", None) not in MISSING:
                        raise
                    print(f"sqla_suite: extension {extension} missing ({e.orig.sqlstate}), skipped")

    provision.post_configure_engine.fns["postgresql"] = tolerant
    if session.config.getoption("sqla_suite_no_lock_check"):
        provision.prepare_for_drop_tables.fns["postgresql"] = lambda config, connection: None


def pytest_addoption(parser):
    parser.addoption("--sqla-suite-no-lock-check", action="store_true", dest="sqla_suite_no_lock_check")
'''


@dataclass
class Outcome:
    """One side's run: counts, each test's result and the failure text of those that did not pass."""

    system: str
    seconds: float = 0.0
    results: dict[str, str] = field(default_factory=dict)  # test id -> passed/failed/error/skipped
    messages: dict[str, str] = field(default_factory=dict)  # test id -> first line of the failure
    problem: str = ""

    def count(self, what: str) -> int:
        return sum(1 for r in self.results.values() if r == what)


def fetch_suite(cache: Path, sqla_version: str) -> Path:
    """The unpacked source distribution of SQLAlchemy ``sqla_version``, fetched once into ``cache``."""
    root = cache / f"sqlalchemy-{sqla_version}"
    if (root / "test" / "dialect" / "test_suite.py").exists():
        return root
    cache.mkdir(parents=True, exist_ok=True)
    # --no-binary only for SQLAlchemy itself: for all of them pip would also build its build requirements
    # (Cython) from source to read the metadata, which takes minutes.
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "download", "--no-binary", "sqlalchemy", "--no-deps"),
            *("--disable-pip-version-check", f"sqlalchemy=={sqla_version}", "-d", str(cache)),
        ],
        check=True,
    )
    archive = cache / f"sqlalchemy-{sqla_version}.tar.gz"
    with tarfile.open(archive) as tar:
        tar.extractall(cache, filter="data")
    return root


def set_up(dsn: str) -> list[str]:
    """The suite's documented set-up (README.unittests): the two schemas it expects. Returns the problems."""
    problems = []
    with psycopg.connect(dsn, autocommit=True) as conn:
        for schema in SCHEMAS:
            try:
                conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")  # type: ignore[arg-type]
            except psycopg.Error as e:
                problems.append(f"CREATE SCHEMA {schema}: {e.sqlstate} {str(e).strip()}")
    return problems


def run_suite(
    system: str, root: Path, url: str, workdir: Path, timeout: int, extra: list[str], no_lock_check: bool
) -> Outcome:
    """pytest over ``test/dialect/test_suite.py`` in the source tree against ``url``; results from its
    JUnit XML."""
    outcome = Outcome(system)
    plugin_dir = workdir / "plugin"
    plugin_dir.mkdir(exist_ok=True)
    (plugin_dir / "sqla_suite_tolerate.py").write_text(TOLERATE_PLUGIN)
    xml = workdir / f"{system}.xml"
    log = workdir / f"{system}.log"
    cmd = [sys.executable, "-m", "pytest", "test/dialect/test_suite.py", "--dburi", url]
    cmd += ["-p", "sqla_suite_tolerate", "-p", "no:cacheprovider", "--maxfail=100000", "-q", "--tb=line"]
    cmd += ["--timeout", str(timeout), f"--junitxml={xml}", *extra]
    if no_lock_check:
        cmd.append("--sqla-suite-no-lock-check")
    env = {**os.environ, "PYTHONPATH": str(plugin_dir)}
    start = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.run(cmd, cwd=root, stdout=out, stderr=subprocess.STDOUT, env=env, check=False)
    outcome.seconds = time.monotonic() - start
    if not xml.exists():
        outcome.problem = f"pytest exited with {proc.returncode} and no results:\n{log.read_text()[-3000:]}"
        return outcome
    for case in ET.parse(xml).getroot().iter("testcase"):
        # the class names carry the server's version (``…Test_postgresql+psycopg_15_18``): drop it so the
        # two sides' ids match
        classname = _VERSIONED.sub("", case.get("classname", ""))
        test = f"{classname}::{case.get('name', '')}"
        result, message = "passed", ""
        for child in case:
            if child.tag in ("failure", "error"):
                result = "failed" if child.tag == "failure" else "error"
                lines = (child.text or "").strip().splitlines()
                message = child.get("message") or (lines[-1] if lines else "")
                break
            if child.tag == "skipped":
                result = "skipped"
        if result == "error" and outcome.results.get(test) == "passed":
            result = "passed (teardown error)"
        outcome.results[test] = result
        if message:
            outcome.messages[test] = message.strip().splitlines()[0] if message.strip() else ""
    return outcome


_VERSIONED = re.compile(r"_postgresql\+\w+_\d+_\d+$")

_BLUR = [
    (re.compile(r"\(Background on this error.*"), ""),
    (re.compile(r"\[SQL: .*"), ""),
    (re.compile(r"0x[0-9a-f]+"), "0x…"),
    (re.compile(r"'[^']*'"), "'…'"),
    (re.compile(r'"[^"]*"'), '"…"'),
    (re.compile(r"\b\d+(\.\d+)?\b"), "N"),
]


def cause(message: str) -> str:
    """A failure's message with what differs between tests of one cause (numbers, names) blurred."""
    text = message.split("\n")[0]
    for pattern, repl in _BLUR:
        text = pattern.sub(repl, text)
    return text.strip()[:160] or "(no message)"


def report(pg: Outcome, node: Outcome, show: int) -> dict[str, Any]:
    rows = []
    for o in (pg, node):
        rows.append(
            (
                o.system,
                o.count("passed") + o.count("passed (teardown error)"),
                o.count("failed"),
                o.count("error"),
                o.count("skipped"),
                len(o.results),
                f"{o.seconds:.0f} s",
            )
        )
    header = ("system", "passed", "failed", "errors", "skipped", "tests", "time")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        print(
            "  ".join(
                str(v).rjust(w) if i else str(v).ljust(w)
                for i, (v, w) in enumerate(zip(r, widths, strict=True))
            )
        )
    pg_pass = {t for t, r in pg.results.items() if r.startswith("passed")}
    node_pass = {t for t, r in node.results.items() if r.startswith("passed")}
    ratio = len(node_pass) / len(pg_pass) if pg_pass else 0.0
    print(f"\nnode: {len(node_pass)} passed, {ratio:.1%} of PostgreSQL's {len(pg_pass)}")
    print(f"  of the tests PostgreSQL passes, the node passes {len(pg_pass & node_pass)}")
    # with one side only, every test the node does not pass
    lost = sorted((pg_pass or set(node.results)) - node_pass)
    groups: dict[str, list[str]] = defaultdict(list)
    for test in lost:
        groups[cause(node.messages.get(test, node.results.get(test, "not run")))].append(test)
    print(f"\n{len(lost)} tests pass on PostgreSQL and not on the node, by cause:")
    for why, tests in sorted(groups.items(), key=lambda kv: -len(kv[1]))[:show]:
        print(f"  {len(tests):5d}  {why}")
        print(f"         e.g. {tests[0]}")
    gained = sorted(node_pass - pg_pass)
    if gained:
        print(f"\n{len(gained)} pass on the node and not on PostgreSQL:")
        for test in gained[:show]:
            print(f"  {test}  (PostgreSQL: {cause(pg.messages.get(test, pg.results.get(test, 'not run')))})")
    return {
        "postgres": {k: v for k, v in zip(header[1:], rows[0][1:], strict=True)},
        "node": {k: v for k, v in zip(header[1:], rows[1][1:], strict=True)},
        "ratio": ratio,
        "causes": {why: len(tests) for why, tests in groups.items()},
        "counts_by_cause": Counter({why: len(t) for why, t in groups.items()}).most_common(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "sqlite-ha" / "sqla-suite")
    parser.add_argument("--sqlalchemy-version", default=version("sqlalchemy"))
    parser.add_argument("--only", choices=("postgres", "node"), help="run one side only")
    parser.add_argument("--nats", action="store_true", help="the node with an embedded NATS (replicated)")
    parser.add_argument("--timeout", type=int, default=120, help="seconds per test before it is failed")
    parser.add_argument(
        "--no-lock-check",
        action="store_true",
        help="skip the teardown's look into pg_stat_activity for sessions idle in transaction (only warns)",
    )
    parser.add_argument("--show", type=int, default=30, help="how many causes to list")
    parser.add_argument("--dir", type=Path, help="where the servers and logs go (kept); default: temporary")
    parser.add_argument("--json", type=Path, help="write the summary here")
    parser.add_argument("pytest_args", nargs="*", help="after --: passed to pytest (e.g. -k Reflection)")
    args = parser.parse_args()

    root = fetch_suite(args.cache_dir, args.sqlalchemy_version)
    workdir = Path(tempfile.mkdtemp(prefix="sqla-suite-", dir=args.dir))
    os.chmod(workdir, 0o711)  # PostgreSQL (run as its own user when we are root) lives inside
    print(f"SQLAlchemy {args.sqlalchemy_version} suite from {root}; servers and logs in {workdir}")
    pg = PostgresServer.in_temp_dir(free_port(), user=USER, password=PASSWORD)
    node_port = free_port()
    node = NodeProcess(
        workdir=workdir / "node",
        nats_port=None if args.nats else 0,
        args=[f"{NODE_DB}.db", "--pg-port", str(node_port), "--pg-pass", PASSWORD, "--log-level", "warn"],
    )
    outcomes: dict[str, Outcome] = {}
    try:
        if args.only != "node":
            pg.init().start()
            for problem in set_up(pg.dsn()):
                print(f"PostgreSQL set-up: {problem}")
            outcomes["postgres"] = run_suite(
                "postgres",
                root,
                pg.url(driver="postgresql+psycopg"),
                workdir,
                args.timeout,
                args.pytest_args,
                args.no_lock_check,
            )
            pg.stop()
        if args.only != "postgres":
            node.start(timeout=60)
            dsn = f"host=127.0.0.1 port={node_port} user={USER} password={PASSWORD} dbname={NODE_DB}"
            for problem in set_up(dsn + " sslmode=disable"):
                print(f"node set-up: {problem}")
            url = f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{node_port}/{NODE_DB}"
            outcomes["node"] = run_suite(
                "node", root, url, workdir, args.timeout, args.pytest_args, args.no_lock_check
            )
    finally:
        node.stop()
        pg.stop()
        if args.dir is None:
            shutil.rmtree(pg.root.parent, ignore_errors=True)
    failed = False
    for o in outcomes.values():
        if o.problem:
            print(f"{o.system}: {o.problem}")
            failed = True
    pg_out = outcomes.get("postgres", Outcome("postgres"))
    node_out = outcomes.get("node", Outcome("node"))
    summary = report(pg_out, node_out, args.show)
    print(f"\nlogs: {workdir}/postgres.log, {workdir}/node.log (pytest output), {workdir}/node/node1.log")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
