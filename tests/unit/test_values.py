"""Lossless JSON encoding of SQLite values, and parameter binding rules."""

from __future__ import annotations

import math
from typing import Any

import pytest

from sqlite_ha.db.params import bindings_from_json
from sqlite_ha.db.values import from_json, row_to_json, to_json
from sqlite_ha.errors import InvalidParams


@pytest.mark.parametrize(
    "value",
    [0, -1, 2**63 - 1, -(2**63), 1.5, 1e308, -0.0, "", "text ü", None, b"", b"\x00\xff", math.inf, -math.inf],
)
def test_round_trip(value: Any) -> None:
    decoded = from_json(to_json(value), "p")
    assert decoded == value
    assert type(decoded) is type(value)


def test_nan_round_trips() -> None:
    out = from_json(to_json(math.nan), "p")
    assert isinstance(out, float)
    assert math.isnan(out)


def test_blob_is_typed_not_text() -> None:
    assert to_json(b"hi") == {"$blob": "aGk="}
    assert from_json("aGk=", "p") == "aGk="  # a plain string stays text


def test_row_encoding_only_wraps_special_values() -> None:
    assert row_to_json((1, "a", None)) == [1, "a", None]
    assert row_to_json((1, b"\x01", math.inf)) == [1, {"$blob": "AQ=="}, {"$float": "Infinity"}]


def test_int_tag_and_bool() -> None:
    assert from_json({"$int": "9223372036854775807"}, "p") == 2**63 - 1
    assert from_json(True, "p") == 1


@pytest.mark.parametrize(
    "bad", [2**63, -(2**63) - 1, [1], {"a": 1}, {"$blob": "!!"}, {"$float": "big"}, {"$int": "x"}]
)
def test_bad_values_are_refused(bad: Any) -> None:
    with pytest.raises(InvalidParams):
        from_json(bad, "p")


def test_params_array_is_positional() -> None:
    assert bindings_from_json([1, "a"]) == (1, "a")


def test_params_object_named_with_prefixes_stripped() -> None:
    assert bindings_from_json({":a": 1, "$b": 2, "@c": 3, "d": 4}) == {"a": 1, "b": 2, "c": 3, "d": 4}


def test_params_numeric_keys_are_positional() -> None:
    assert bindings_from_json({"$2": "b", "$1": "a"}) == ("a", "b")
    with pytest.raises(InvalidParams, match=r"\$1 is missing"):
        bindings_from_json({"$2": "b"})


def test_params_mixing_is_refused() -> None:
    with pytest.raises(InvalidParams, match="mixes positional and named"):
        bindings_from_json({"$1": 1, "name": 2})


def test_params_duplicate_after_stripping_is_refused() -> None:
    with pytest.raises(InvalidParams, match="twice"):
        bindings_from_json({":a": 1, "$a": 2})


def test_params_wrong_type() -> None:
    with pytest.raises(InvalidParams, match="object or an array"):
        bindings_from_json("x")
