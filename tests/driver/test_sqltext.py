"""What the driver reads of SQL text before the node runs it: statement boundaries and kinds."""

from __future__ import annotations

import pytest

from sqlite_ha.driver.sqltext import Kind, Parsed, classify, inspect, split


def test_split_keeps_semicolons_inside_strings_identifiers_comments_and_triggers() -> None:
    script = """
        INSERT INTO t VALUES ('a;b', "c;d", [e;f], `g;h`); -- a comment; with a semicolon
        /* block; comment */ SELECT 1;
        CREATE TEMP TRIGGER IF NOT EXISTS tr AFTER INSERT ON t BEGIN
            UPDATE t SET x = CASE WHEN new.x > 1 THEN 'big;' ELSE 'small' END;
            DELETE FROM u;
        END;
        ;;
        SELECT 'tail'
    """
    parts = split(script)
    assert len(parts) == 4
    assert parts[0].startswith("INSERT")
    assert parts[0].endswith("`g;h`)")
    assert parts[1].endswith("SELECT 1")
    assert parts[2].startswith("CREATE TEMP TRIGGER")
    assert parts[2].endswith("END")
    assert parts[3] == "SELECT 'tail'"


@pytest.mark.parametrize(
    ("sql", "count"),
    [
        ("SELECT 1", 1),
        ("SELECT 1;", 1),
        ("SELECT 1; -- done", 1),
        ("SELECT 1; SELECT 2", 2),
        ("", 0),
        (";", 0),
    ],
)
def test_statement_count(sql: str, count: int) -> None:
    assert inspect(sql)[0] == count


@pytest.mark.parametrize(
    ("sql", "parsed"),
    [
        ("  begin immediate transaction", Parsed(Kind.BEGIN)),
        ("COMMIT TRANSACTION", Parsed(Kind.COMMIT)),
        ("end", Parsed(Kind.COMMIT)),
        ("ROLLBACK", Parsed(Kind.ROLLBACK)),
        ('ROLLBACK TRANSACTION TO SAVEPOINT "my sp"', Parsed(Kind.ROLLBACK_TO, "my sp")),
        ("rollback to s1", Parsed(Kind.ROLLBACK_TO, "s1")),
        ("SAVEPOINT [x y]", Parsed(Kind.SAVEPOINT, "x y")),
        ("RELEASE SAVEPOINT s1", Parsed(Kind.RELEASE, "s1")),
        ("release 's2'", Parsed(Kind.RELEASE, "s2")),
        ("/* c */ insert into t values (1)", Parsed(Kind.DML)),
        ("REPLACE INTO t VALUES (1)", Parsed(Kind.DML)),
        ("WITH x AS (SELECT 1) DELETE FROM t", Parsed(Kind.OTHER)),  # sqlite3: not DML (first word)
        ("CREATE TABLE begin_at (x)", Parsed(Kind.OTHER)),
        ("SELECT 1", Parsed(Kind.OTHER)),
    ],
)
def test_classify(sql: str, parsed: Parsed) -> None:
    assert classify(sql) == parsed
