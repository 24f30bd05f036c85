"""The checker's own logic, on made-up histories: it must catch what it claims to catch."""

from __future__ import annotations

from sqlite_ha.chaos.checker import Snapshot, longest_gap
from sqlite_ha.chaos.history import Op, Outcome, classify
from sqlite_ha.chaos.workloads import AutoKeyInserts, BatchTransactions, HotUpserts, UniqueInserts


def op(workload: str, write_id: str, outcome: Outcome, status: int = 200, result: object = None) -> Op:
    return Op(
        workload=workload,
        node="node1",
        write_id=write_id,
        start=0.0,
        end=1.0,
        status=status,
        outcome=outcome,
        seq=1 if outcome is Outcome.OK else None,
        result=result,
    )


def test_classify() -> None:
    assert classify(200, {"seq": 3}) is Outcome.OK
    assert classify(200, {"rows": []}) is Outcome.ANOMALY  # a write answered without its position
    assert classify(202, {"replication": {"status": "pending"}}) is Outcome.PENDING
    assert classify(503, {"error": {"code": "not_replicating"}}) is Outcome.REFUSED
    assert classify(400, None) is Outcome.REFUSED
    assert classify(504, None) is Outcome.UNKNOWN
    assert classify(500, None) is Outcome.UNKNOWN


def test_longest_gap_skips_the_nodes_own_downtime() -> None:
    assert longest_gap([1.0, 2.0, 3.0], (0.0, 4.0), []) == 1.0
    assert longest_gap([1.0, 9.0], (0.0, 10.0), []) == 8.0
    assert longest_gap([1.0, 9.0], (0.0, 10.0), [[2.0, 8.5]]) == 1.0  # down 2.0-8.5: gaps 1.0 and 0.5
    assert longest_gap([], (0.0, 10.0), [[0.0, float("inf")]]) == 0.0
    assert longest_gap([], (0.0, 10.0), []) == 10.0


def test_unique_lost_pending_and_phantom() -> None:
    ops = [
        op("unique", "a", Outcome.OK),
        op("unique", "b", Outcome.PENDING, 202),
        op("unique", "c", Outcome.REFUSED, 503),
        op("unique", "d", Outcome.UNKNOWN, 0),
    ]
    rows = {"node1": [["a", "node1"], ["b", "node1"], ["c", "node1"]], "node2": [["d", "node1"]]}
    f = UniqueInserts().check(ops, rows)
    assert len(f.lost) == 1
    assert "missing on ['node2']" in f.lost[0]
    assert len(f.pending_lost) == 1
    assert f.pending_lost[0].startswith("unique b")
    assert len(f.phantom) == 1
    assert f.phantom[0].startswith("unique c")
    assert f.unknown == {"some": 1}  # d: may or may not have happened; not a violation


def test_batch_partial_and_lost() -> None:
    ops = [op("batch", "x", Outcome.OK), op("batch", "y", Outcome.OK)]
    rows = {
        "node1": [["x/0", "x", 0], ["x/1", "x", 1], ["x/2", "x", 2], ["y/0", "y", 0]],
        "node2": [["x/0", "x", 0], ["x/1", "x", 1], ["x/2", "x", 2]],
    }
    f = BatchTransactions().check(ops, rows)
    assert f.partial == ["batch y: 1 of 3 rows on node1"]
    assert len(f.lost) == 1
    assert f.lost[0].startswith("batch y")


def test_upsert_value_of_a_refused_write() -> None:
    w = HotUpserts()
    ok, refused = op("upsert", "w1", Outcome.OK), op("upsert", "w2", Outcome.REFUSED, 503)
    rows = {"node1": [[w.key_of("w1"), "w1"]], "node2": [[w.key_of("w2"), "w2"]]}
    if w.key_of("w1") != w.key_of("w2"):
        rows["node2"].append([w.key_of("w1"), "w1"])
    f = w.check([ok, refused], rows)
    assert len(f.phantom) == 1
    assert "w2" in f.phantom[0]
    assert w.check([ok], {"node1": [[w.key_of("w1"), "nobody"]]}).invalid


def test_auto_keys_two_writes_one_id() -> None:
    ops = [op("auto", "t1", Outcome.OK, result=7), op("auto", "t2", Outcome.OK, result=7)]
    f = AutoKeyInserts().check(ops, {"node1": [[7, "t2"]], "node2": [[7, "t2"]]})
    assert len(f.lost) == 1
    assert f.lost[0].startswith("auto t1")
    assert any("answered to 2 writes" in line for line in f.invalid)


def test_divergent_tables() -> None:
    same = Snapshot(tables={"t": {"node1": [[1, "a"]], "node2": [[1, "a"]]}})
    assert same.divergent() == []
    differ = Snapshot(tables={"t": {"node1": [[1, "a"]], "node2": [[1, "b"]]}})
    assert len(differ.divergent()) == 1
