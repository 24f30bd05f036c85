"""The transaction block's state machine, without I/O: every transition a session can cause."""

from __future__ import annotations

import pytest

from sqlite_ha.server.pgwire.transaction import BlockError, State, TransactionBlock


def test_begin_commit_without_writes_takes_nothing() -> None:
    block = TransactionBlock()
    assert block.status() == "I"
    assert not block.in_block
    assert block.begin()
    assert block.status() == "T"
    assert block.state is State.OPEN
    assert not block.begin()  # a second BEGIN: PostgreSQL warns and stays in the block
    ended = block.end(commit=True)
    assert (ended.tx, ended.commit, ended.was_open) == (None, True, True)
    assert block.status() == "I"


def test_end_outside_a_block_says_so() -> None:
    ended = TransactionBlock().end(commit=True)
    assert not ended.was_open


def test_first_write_takes_the_writer_and_gets_the_pending_savepoints() -> None:
    block = TransactionBlock()
    block.begin()
    assert not block.savepoint("a")
    assert not block.savepoint("b")
    handle = object()
    assert block.took_writer(handle) == ["a", "b"]  # type: ignore[arg-type]
    assert block.state is State.WRITING
    assert block.tx is handle
    assert block.savepoint("c")  # now made on the writer
    assert block.pending_savepoints == []


def test_the_writer_is_taken_only_in_an_open_block() -> None:
    block = TransactionBlock()
    with pytest.raises(BlockError):
        block.took_writer(object())  # type: ignore[arg-type]


def test_a_failed_block_commits_as_a_rollback_and_hands_back_its_writer() -> None:
    block = TransactionBlock()
    block.begin()
    handle = object()
    block.took_writer(handle)  # type: ignore[arg-type]
    block.fail()
    assert block.status() == "E"
    assert block.failed
    ended = block.end(commit=True)
    assert ended.tx is handle
    assert not ended.commit
    assert block.tx is None
    assert block.status() == "I"


def test_a_failure_outside_a_block_leaves_it_idle() -> None:
    block = TransactionBlock()
    block.fail()
    assert block.status() == "I"


def test_rollback_to_a_pending_savepoint_recovers_a_failed_block() -> None:
    block = TransactionBlock()
    block.begin()
    block.savepoint("a")
    block.savepoint("b")
    block.fail()
    assert not block.rollback_to("a")  # nothing on a writer: handled here
    assert block.state is State.OPEN
    assert block.pending_savepoints == ["a"]
    with pytest.raises(BlockError) as e:
        block.release("b")
    assert e.value.code == "3B001"


def test_rollback_to_on_the_writer_recovers_once_it_succeeded() -> None:
    block = TransactionBlock()
    block.begin()
    block.took_writer(object())  # type: ignore[arg-type]
    block.fail()
    assert block.rollback_to("a")  # the writer must do it
    assert block.failed  # not yet: it may fail there
    block.rolled_back_to()
    assert block.state is State.WRITING


def test_release_drops_the_pending_savepoint_and_those_after_it() -> None:
    block = TransactionBlock()
    block.begin()
    for name in ("a", "b", "a", "c"):
        block.savepoint(name)
    assert not block.release("a")  # the latest "a"
    assert block.pending_savepoints == ["a", "b"]


def test_savepoints_outside_a_block_are_refused_with_postgresql_words() -> None:
    block = TransactionBlock()
    for call, words in (
        (block.savepoint, "SAVEPOINT"),
        (block.release, "RELEASE SAVEPOINT"),
        (block.rollback_to, "ROLLBACK TO SAVEPOINT"),
    ):
        with pytest.raises(BlockError) as e:
            call("a")
        assert (e.value.code, e.value.message) == ("25P01", f"{words} can only be used in transaction blocks")


def test_mirror_follows_the_writer_status() -> None:
    block = TransactionBlock()
    block.mirror("T")
    assert block.status() == "T"
    block.mirror("E")
    assert block.status() == "E"
    block.mirror("I")
    assert block.status() == "I"


def test_abandon_returns_the_writer_to_roll_back() -> None:
    block = TransactionBlock()
    block.begin()
    handle = object()
    block.took_writer(handle)  # type: ignore[arg-type]
    assert block.abandon() is handle
    assert block.status() == "I"
    assert block.abandon() is None
