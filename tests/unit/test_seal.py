"""The MAC on replication messages and on snapshot manifests, and the change-set decoder under fuzzing."""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlite_ha.changes.changeset import ChangeSet, RowChange
from sqlite_ha.changes.store import UNAUTHENTICATED
from sqlite_ha.replication import chunk, codec
from sqlite_ha.replication.inbound import Inbound
from sqlite_ha.replication.replicator import Delivery
from sqlite_ha.replication.seal import OVERHEAD, PLAIN, Sealer, Unauthenticated, open_sealed, seal
from sqlite_ha.replication.signed_snapshots import check, sign
from sqlite_ha.replication.snapshot import SnapshotMeta
from sqlite_ha.security.keys import ClusterKeys

S1 = "first-secret-0123456789"
S2 = "second-secret-0123456789"
KEYS = ClusterKeys.from_text(S1)


def a_changeset(database: str = "app.db") -> bytes:
    return codec.encode(
        ChangeSet(
            database=database,
            node="n1",
            hlc=42,
            changes=(
                RowChange(
                    table="t", op="INSERT", columns=("id", "v"), pk_columns=("id",), key=(1,), new=(1, "x")
                ),
            ),
        )
    )


def test_a_sealed_message_opens_to_its_payload_and_the_seal_is_fixed_size() -> None:
    payload = a_changeset()
    sealed = seal(KEYS.signing, "app.db", payload)
    assert sealed.startswith(b"#sig v1 " + KEYS.signing.key_id.encode() + b" ")
    assert len(sealed) == len(payload) + OVERHEAD
    assert open_sealed(KEYS, "app.db", sealed) == payload
    assert seal(KEYS.signing, "app.db", payload) == sealed  # the same bytes again: deduplicated by the log


@pytest.mark.parametrize(
    ("message", "why"),
    [
        (a_changeset(), "no MAC"),
        (seal(ClusterKeys.from_text(S2).signing, "app.db", a_changeset()), "not one of this node's"),
        (seal(KEYS.signing, "app.db", a_changeset()).replace(b'"x"', b'"y"'), "does not match"),
        (seal(KEYS.signing, "other.db", a_changeset()), "does not match"),  # replayed onto another database
        (seal(KEYS.signing, "app.db", a_changeset(), kind=b"snapshot"), "does not match"),  # another kind
        (b"#sig v2 0011aabb AAAA\n{}", "version"),
        (b"#sig v1 0011aabb\n{}", "malformed"),
        (b"#sig v1 ../../etc AAAA\n{}", "malformed"),
        (b"#sig " + b"x" * 500, "malformed"),
        (b"", "no MAC"),
    ],
)
def test_what_does_not_verify_is_refused_with_why(message: bytes, why: str) -> None:
    with pytest.raises(Unauthenticated, match=why):
        open_sealed(KEYS, "app.db", message)


def test_during_a_rotation_both_keys_verify_and_the_first_signs() -> None:
    old, both = ClusterKeys.from_text(S1), ClusterKeys.from_text(f"{S2},{S1}")
    payload = a_changeset()
    assert open_sealed(both, "app.db", seal(old.signing, "app.db", payload)) == payload
    with pytest.raises(Unauthenticated):  # the new key is not one the old node knows
        open_sealed(old, "app.db", Sealer(both).seal("app.db", payload))


def test_a_node_without_keys_publishes_plain_and_strips_a_seal_unchecked() -> None:
    payload = a_changeset()
    assert PLAIN.seal("app.db", payload) == payload
    assert PLAIN.overhead == 0
    assert PLAIN.open("app.db", payload) == payload
    assert PLAIN.open("app.db", seal(KEYS.signing, "app.db", payload)) == payload


def test_inbound_parks_what_fails_and_reads_what_verifies() -> None:
    inbound = Inbound("app.db", Sealer(KEYS))
    bad = inbound.read(Delivery(seq=7, payload=a_changeset(), msg_id="x"))
    assert bad.changeset is None
    assert bad.chunk is None
    assert bad.error_state == UNAUTHENTICATED
    assert bad.error is not None
    assert "no MAC" in bad.error
    assert inbound.status()["refused"] == 1
    good = inbound.read(Delivery(seq=8, payload=seal(KEYS.signing, "app.db", a_changeset()), msg_id="y"))
    assert good.changeset is not None
    assert good.changeset.hlc == 42
    assert good.payload == a_changeset()  # parked (if it must be) without the seal


def test_every_chunk_is_sealed_on_its_own() -> None:
    payload = a_changeset() * 3
    pieces = list(
        chunk.split(payload, msg_id="m", node="n1", database="app.db", hlc=1, sha256="0" * 64, part=40)
    )
    inbound = Inbound("app.db", Sealer(KEYS))
    for i, (_, message) in enumerate(pieces):
        got = inbound.read(Delivery(seq=i + 1, payload=seal(KEYS.signing, "app.db", message), msg_id="m"))
        assert got.chunk is not None
        assert got.chunk.index == i
    assert inbound.read(Delivery(seq=99, payload=pieces[0][1], msg_id="m")).chunk is None  # unsealed


# ---------------------------------------------------------------------------------------- fuzzing
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
field_names = st.sampled_from(
    [
        "v",
        "node",
        "database",
        "hlc",
        "changes",
        "timestamp_ns",
        "table",
        "columns",
        "operation",
        "pk_columns",
        "key",
        "new_values",
        "old_values",
        "command",
        "args",
        "$blob",
        "$int",
        "$float",
    ]
)


def _mutated(doc: Any, data: st.DataObject) -> Any:
    """A valid change set with one value somewhere replaced by anything JSON."""
    if isinstance(doc, dict) and doc and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(doc)))
        doc = {**doc, key: _mutated(doc[key], data)}
        return doc
    if isinstance(doc, list) and doc and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(doc) - 1))
        return [*doc[:i], _mutated(doc[i], data), *doc[i + 1 :]]
    return data.draw(json_values | st.dictionaries(field_names, json_values, max_size=4))


@settings(max_examples=400)
@given(st.binary(max_size=512))
def test_decode_of_arbitrary_bytes_raises_only_decode_error(data: bytes) -> None:
    with contextlib.suppress(codec.DecodeError):
        codec.decode(data)
    with contextlib.suppress(codec.DecodeError):
        chunk.parse(data)


@settings(max_examples=400)
@given(st.data())
def test_decode_of_a_mutated_change_set_raises_only_decode_error(data: st.DataObject) -> None:
    doc = _mutated(orjson.loads(a_changeset()), data)
    try:
        encoded = orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):
        return  # NaN keys and the like: not JSON
    try:
        cs = codec.decode(encoded)
    except codec.DecodeError:
        return
    assert isinstance(cs, ChangeSet)


@settings(max_examples=400)
@given(st.binary(max_size=512), st.sampled_from([b"", b"#sig ", b"#sig v1 ", b"#chunk "]))
def test_arbitrary_bytes_never_get_past_the_seal(data: bytes, prefix: bytes) -> None:
    message = prefix + data
    got = Inbound("app.db", Sealer(KEYS)).read(Delivery(seq=1, payload=message, msg_id=None))
    assert got.changeset is None
    assert got.chunk is None
    assert got.error_state == UNAUTHENTICATED
    with pytest.raises(Unauthenticated):
        open_sealed(KEYS, "app.db", message)
    # without keys: a stripped or plain payload, a decode error or a malformed seal; never an exception
    plain = Inbound("app.db", PLAIN).read(Delivery(seq=1, payload=message, msg_id=None))
    if not message.startswith(b"#sig "):
        assert plain.error_state != UNAUTHENTICATED


@settings(max_examples=200)
@given(st.binary(max_size=256), st.integers(0, 300))
def test_one_flipped_byte_of_a_sealed_message_is_refused(tail: bytes, where: int) -> None:
    sealed = bytearray(seal(KEYS.signing, "app.db", a_changeset() + tail))
    i = where % len(sealed)
    sealed[i] ^= 0x01  # in the seal line (then malformed, another key or MAC) or in the payload
    with pytest.raises(Unauthenticated):
        open_sealed(KEYS, "app.db", bytes(sealed))


# ---------------------------------------------------------------------------------------- snapshots
META = SnapshotMeta(
    database="app.db",
    seq=120,
    hlc=9,
    sha256="ab" * 32,
    size=4096,
    schema_version=3,
    node="n1",
    taken_at=1765000000.25,
    covers_through=130,
)


def test_a_signed_manifest_verifies_after_a_trip_through_object_headers() -> None:
    signed = sign(KEYS.signing, META)
    back = SnapshotMeta.from_headers(signed.headers())
    assert back == signed
    assert check(KEYS, back, "app.db") is None
    assert check(ClusterKeys.from_text(f"{S2},{S1}"), back, "app.db") is None  # rotation


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"sha256": "cd" * 32}, "does not match"),  # the attacker's bytes, their digest fixed in the manifest
        ({"seq": 999}, "does not match"),
        ({"mac": ""}, "no MAC"),
        ({"mac": "v1 deadbeef AAAA"}, "not one of this node's"),
        ({"mac": "v9 x y"}, "malformed"),
        ({"database": "other.db"}, "names database"),
    ],
)
def test_an_altered_manifest_is_refused(change: dict[str, Any], why: str) -> None:
    forged = dataclasses.replace(sign(KEYS.signing, META), **change)
    reason = check(KEYS, forged, "app.db")
    assert reason is not None
    assert why in reason
