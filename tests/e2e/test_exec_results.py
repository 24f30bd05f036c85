"""What statements that return no rows answer over HTTP: ``[rows_affected, last_insert_id]``.

``rows_affected`` is SQLite's count for an INSERT, UPDATE or DELETE and 0 for anything else;
``last_insert_id`` is the rowid of the latest row inserted by the same request, 0 if it inserted none. Neither
may ever show what an earlier statement, another request or the node's own replication work did. (The inserts
give their keys: which rowid SQLite would choose is not the subject here.)
"""

from __future__ import annotations

from typing import Any

from sqlite_ha.testing import NodeProcess


def exec_row(answer: dict[str, Any]) -> list[Any]:
    assert answer["columns"] == ["rows_affected", "last_insert_id"], answer
    return answer["rows"][0]  # type: ignore[no-any-return]


def test_statements_that_change_no_rows_answer_zero(node: NodeProcess) -> None:
    batch = [
        "CREATE TABLE t(id INTEGER PRIMARY KEY, v)",
        "INSERT INTO t(id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')",
        "CREATE TABLE u(id INTEGER PRIMARY KEY, t REFERENCES t(id))",
        "CREATE INDEX t_v ON t(v)",
        "UPDATE t SET v = 'x' WHERE id = 99",
        "INSERT INTO u(t) SELECT id FROM t WHERE 0",
        "PRAGMA user_version = 7",
        "ANALYZE",
        "CREATE TABLE copy AS SELECT * FROM t",
        "ALTER TABLE t ADD COLUMN w",
        "UPDATE t SET w = 1 WHERE id <= 2",
        "WITH old AS (SELECT 3 AS id) DELETE FROM t WHERE id IN (SELECT id FROM old)",
        "DROP TABLE copy",
        "INSERT INTO t(id, v) VALUES (4, 'd')",
        "DROP INDEX t_v",
    ]
    answer = node.query([{"sql": sql} for sql in batch])
    got = [exec_row(r) for r in answer["results"]]
    assert got == [
        [0, 0],  # CREATE TABLE, first statement
        [3, 3],
        [0, 3],  # DDL changes no rows; the request's latest insert is still row 3
        [0, 3],
        [0, 3],  # an UPDATE matching nothing
        [0, 3],  # an INSERT … SELECT inserting nothing
        [0, 3],  # a pragma that sets
        [0, 3],
        [0, 3],  # CREATE TABLE … AS SELECT counts no rows (SQLite's rule)
        [0, 3],
        [2, 3],
        [1, 3],  # a DELETE after a WITH clause is a DELETE
        [0, 3],  # DROP TABLE deletes rows without counting them
        [1, 4],
        [0, 4],
    ]


def test_single_requests_never_show_another_requests_values(node: NodeProcess) -> None:
    assert exec_row(node.query({"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v)"})) == [0, 0]
    assert exec_row(node.query({"sql": "INSERT INTO t(id, v) VALUES (1, 'a'), (2, 'b'), (3, 'c')"})) == [3, 3]
    # the statements below used to answer [3, 3]: the count and rowid of the insert of the request before
    assert exec_row(node.query({"sql": "CREATE TABLE other(x)"})) == [0, 0]
    assert exec_row(node.query({"sql": "UPDATE t SET v = 'x' WHERE id = 99"})) == [0, 0]
    assert exec_row(node.query({"sql": "CREATE INDEX t_v ON t(v)"})) == [0, 0]
    assert exec_row(node.query({"sql": "DELETE FROM t WHERE id = 1"})) == [1, 0]
    assert exec_row(node.query({"sql": "INSERT INTO other(rowid, x) VALUES (5, 1)"})) == [1, 5]
    assert exec_row(node.query({"sql": "DROP TABLE other"})) == [0, 0]
    answer = node.query([{"sql": "UPDATE t SET v = 'y'"}, {"sql": "DROP INDEX t_v"}])
    assert [exec_row(r) for r in answer["results"]] == [[2, 0], [0, 0]]
