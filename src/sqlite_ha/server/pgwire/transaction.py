"""The transaction block of a PostgreSQL session, as one sans-IO state machine.

PostgreSQL's model over SQLite's single writer: ``BEGIN`` opens a block and takes nothing yet; reads before
the first write run on the reader (each sees the latest commit, as READ COMMITTED does); the first write takes
the writer (a ``WriteTransaction``) until COMMIT or ROLLBACK. Savepoints made before that wait here and are
replayed on the writer when it is taken. A statement that fails inside the block fails the block: everything
but ROLLBACK (or ROLLBACK TO a savepoint) gets 25P02, and COMMIT rolls back.

Every change of state is a method here (h11's rule: transitions in one place, the callers only report
events), so the session loop, the commands, COPY and writer-mode forwarding cannot leave the block
half-changed. It does no I/O: committing is the caller's (it waits for the log), to whom ``end`` hands the
transaction.

    IDLE ──begin──▶ OPEN ──took_writer──▶ WRITING
      ▲               │ fail                 │ fail
      │               ▼                      ▼
      └──end──── FAILED (writer held or not; rolled_back_to returns to OPEN / WRITING)
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from sqlite_ha.db.transaction import WriteTransaction


class State(enum.Enum):
    IDLE = "I"  # no block: each statement is its own transaction
    OPEN = "T"  # BEGIN was sent; nothing written yet, the writer not taken
    WRITING = "W"  # the block's first write took the writer
    FAILED = "E"  # a statement failed inside the block: only ROLLBACK now


class BlockError(Exception):
    """An event that the block's state does not allow (a SQLSTATE and PostgreSQL's message)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class Ended:
    """What ``end`` leaves the caller to do: commit or roll back ``tx`` (None: nothing was written)."""

    tx: WriteTransaction | None
    commit: bool  # False: roll it back (ROLLBACK, or COMMIT of a failed block)
    was_open: bool  # False: there was no block (PostgreSQL answers with a warning, 25P01)


@dataclass(slots=True)
class TransactionBlock:
    state: State = State.IDLE
    tx: WriteTransaction | None = None
    pending_savepoints: list[str] = field(default_factory=list)  # made before the writer was taken

    # ------------------------------------------------------------------------------------ reading
    @property
    def in_block(self) -> bool:
        return self.state is not State.IDLE

    @property
    def failed(self) -> bool:
        return self.state is State.FAILED

    def status(self) -> str:
        """ReadyForQuery's transaction status: I, T or E."""
        if self.state is State.IDLE:
            return "I"
        return "E" if self.state is State.FAILED else "T"

    # ------------------------------------------------------------------------------------ events
    def begin(self) -> bool:
        """BEGIN; False when a block is open already (PostgreSQL warns, 25001, and goes on)."""
        if self.state is not State.IDLE:
            return False
        self.state = State.OPEN
        return True

    def took_writer(self, tx: WriteTransaction) -> list[str]:
        """The block's first write took the writer: returns the savepoints to replay on it, in order."""
        if self.state is not State.OPEN:
            raise BlockError("25000", f"the writer was taken in state {self.state.name}")
        self.state = State.WRITING
        self.tx = tx
        pending, self.pending_savepoints = self.pending_savepoints, []
        return pending

    def fail(self) -> None:
        """A statement failed: inside a block the block fails; outside there is nothing to remember."""
        if self.state is not State.IDLE:
            self.state = State.FAILED

    def end(self, *, commit: bool) -> Ended:
        """COMMIT or ROLLBACK: the block is over here, whatever the caller then makes of ``tx``."""
        ended = Ended(tx=self.tx, commit=commit and self.state is not State.FAILED, was_open=self.in_block)
        self.state = State.IDLE
        self.tx = None
        self.pending_savepoints.clear()
        return ended

    def abandon(self) -> WriteTransaction | None:
        """The session ends or hands its transaction over: returns it, to roll back or pass on."""
        tx = self.tx
        self.end(commit=False)
        return tx

    def mirror(self, status: str) -> None:
        """Follow the writer this session forwards its block to: the writer's ReadyForQuery status decides
        (the transaction lives there)."""
        if status == "I":
            self.end(commit=False)
        elif status == "E":
            self.state = State.FAILED
        else:
            self.state = State.WRITING if self.tx is not None else State.OPEN

    def savepoints_forwarded(self) -> None:
        """The pending savepoints were made on the writer this block is forwarded to."""
        self.pending_savepoints.clear()

    # ------------------------------------------------------------------------------------ savepoints
    def savepoint(self, name: str) -> bool:
        """SAVEPOINT: True when it must be made on the writer now; else it waits for the first write."""
        self._check_in_block("SAVEPOINT")
        if self.tx is not None:
            return True
        self.pending_savepoints.append(name)
        return False

    def release(self, name: str) -> bool:
        """RELEASE: True when the writer has it (release it there); else the pending one is dropped here."""
        self._check_in_block("RELEASE SAVEPOINT")
        if self.tx is not None:
            return True
        del self.pending_savepoints[self._pending_index(name) :]
        return False

    def rollback_to(self, name: str) -> bool:
        """ROLLBACK TO: True when the writer must roll back to it (call ``rolled_back_to`` once it did)."""
        self._check_in_block("ROLLBACK TO SAVEPOINT")
        if self.tx is not None:
            return True
        del self.pending_savepoints[self._pending_index(name) + 1 :]
        self.rolled_back_to()
        return False

    def rolled_back_to(self) -> None:
        """The rollback to a savepoint succeeded: a failed block is usable again."""
        if self.state is State.FAILED:
            self.state = State.WRITING if self.tx is not None else State.OPEN

    def _check_in_block(self, what: str) -> None:
        if self.state is State.IDLE:
            raise BlockError("25P01", f"{what} can only be used in transaction blocks")

    def _pending_index(self, name: str) -> int:
        if name not in self.pending_savepoints:
            raise BlockError("3B001", f'savepoint "{name}" does not exist')
        return len(self.pending_savepoints) - 1 - self.pending_savepoints[::-1].index(name)
