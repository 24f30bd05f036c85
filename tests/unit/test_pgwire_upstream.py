"""Which of the writer's answers a forwarded session passes on (``upstream.Upstream._take``): the answers to
the session's own requests are swallowed, the client's are relayed byte for byte, and an error ends the
requests the writer skips up to the next Sync, as PostgreSQL does."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from sqlite_ha.server.pgwire.forwarding.upstream import Upstream
from sqlite_ha.server.pgwire.wire import codec


class Sink:
    """Where the requests go (the writer's socket in production): kept, to be looked at."""

    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, data: bytes) -> None:
        self.data += data


def upstream() -> tuple[Upstream, list[bytes], list[int]]:
    relayed: list[bytes] = []
    seqs: list[int] = []
    up = Upstream(
        cast(asyncio.StreamReader, None),
        cast(Any, Sink()),
        target=("127.0.0.1", 5432),
        relay=relayed.append,
        on_seq=seqs.append,
    )
    return up, relayed, seqs


def answer(up: Upstream, *messages: bytes) -> bytes:
    up._parser.feed(b"".join(messages))
    return up._take()


def test_own_requests_are_swallowed_and_the_clients_relayed() -> None:
    up, _, seqs = upstream()
    up.send(
        [
            codec.Parse(name="s", sql="INSERT …", param_oids=()),
            codec.Bind(portal="", statement="s", param_formats=(), params=(), result_formats=()),
        ],
        relay=False,
    )
    up.send([codec.Execute(portal="", max_rows=0), codec.Sync()])
    seq = codec.parameter_status("ha.seq", "42")
    out = answer(
        up,
        codec.parse_complete(),
        codec.bind_complete(),
        codec.command_complete("INSERT 0 1"),
        seq,
        codec.ready_for_query("I"),
    )
    assert out == codec.command_complete("INSERT 0 1") + seq + codec.ready_for_query("I")
    assert seqs == [42]
    assert up.at_rest
    assert up.status == "I"
    assert up.swallowed_error is None


def test_an_error_skips_to_sync_and_an_own_requests_error_is_kept() -> None:
    up, _, _ = upstream()
    up.send([codec.Parse(name="s", sql="INSERT …", param_oids=())], relay=False)
    up.send([codec.Execute(portal="", max_rows=0), codec.Execute(portal="", max_rows=0), codec.Sync()])
    error = codec.error_response("ERROR", "42P01", 'relation "t" does not exist')
    out = answer(up, error)
    assert out == b""  # the error answers the session's own Parse: kept, not relayed
    assert up.swallowed_error == error
    assert not up.at_rest  # the Sync is still to be answered; both Executes were skipped
    assert answer(up, codec.ready_for_query("E")) == codec.ready_for_query("E")
    assert up.at_rest
    assert up.status == "E"


def test_a_simple_query_ends_at_ready_for_query_even_after_an_error() -> None:
    up, _, _ = upstream()
    up.send([codec.Query(sql="INSERT …; SELECT 1")])
    error = codec.error_response("ERROR", "23505", "duplicate key")
    assert answer(up, error) == error
    assert not up.at_rest
    assert answer(up, codec.ready_for_query("I")) == codec.ready_for_query("I")
    assert up.at_rest


def test_bytes_split_anywhere_give_the_same_answer() -> None:
    whole = codec.row_description([]) + codec.data_row([b"1"]) + codec.command_complete("SELECT 1")
    whole += codec.ready_for_query("T")
    up, _, _ = upstream()
    up.send([codec.Query(sql="SELECT 1")])
    out = b"".join(answer(up, whole[i : i + 1]) for i in range(len(whole)))
    assert out == whole
    assert up.status == "T"
