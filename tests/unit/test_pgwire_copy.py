"""COPY, sans-IO: the statement's syntaxes, the text/CSV/binary row formats both ways, their codec messages.

Every parser test feeds its input whole, byte by byte, and in two halves, and must get the same rows; the
properties check that whatever the encoder writes, the parser reads back as the same rows."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlite_ha.server.pgwire.copy.format import (
    BINARY_SIGNATURE,
    CopyError,
    CopyOptions,
    CopyRow,
    RowEncoder,
    row_parser,
    unescape_text,
)
from sqlite_ha.server.pgwire.copy.statement import parse_copy
from sqlite_ha.server.pgwire.wire import backend_parser as bp
from sqlite_ha.server.pgwire.wire import codec

TEXT = CopyOptions()
CSV = CopyOptions(format="csv", delimiter=b",", null=b"")
BINARY = CopyOptions(format="binary")

Values = list[bytes | None]


def parse_all(options: CopyOptions, columns: Sequence[str], data: bytes) -> list[CopyRow]:
    """The rows of ``data`` fed whole, byte by byte and in two halves: all three must agree."""
    answers = []
    for pieces in (
        [data],
        [data[i : i + 1] for i in range(len(data))],
        [data[: len(data) // 2], data[len(data) // 2 :]],
    ):
        parser = row_parser(options, columns)
        rows: list[CopyRow] = []
        for piece in pieces:
            rows += parser.feed(piece)
        rows += parser.finish()
        answers.append(rows)
    assert answers[0] == answers[1] == answers[2]
    return answers[0]


def values(options: CopyOptions, columns: Sequence[str], data: bytes) -> list[Values]:
    return [row.values for row in parse_all(options, columns, data)]


def error(options: CopyOptions, columns: Sequence[str], data: bytes) -> CopyError:
    parser = row_parser(options, columns)

    def run() -> None:
        parser.feed(data)
        parser.finish()

    with pytest.raises(CopyError) as caught:
        run()
    return caught.value


# ---------------------------------------------------------------------------------------- the statement
@pytest.mark.parametrize(
    ("sql", "fmt", "header", "delimiter", "null"),
    [
        ("COPY t FROM STDIN", "text", False, b"\t", b"\\N"),
        ("copy t from stdin;", "text", False, b"\t", b"\\N"),
        ("COPY t FROM STDIN WITH CSV HEADER", "csv", True, b",", b""),
        ("COPY t FROM STDIN DELIMITER ','", "text", False, b",", b"\\N"),
        ("COPY t FROM STDIN WITH DELIMITER AS '|' NULL AS 'nil' CSV", "csv", False, b"|", b"nil"),
        ("COPY t FROM STDIN (FORMAT csv, HEADER true, DELIMITER ';', NULL 'x')", "csv", True, b";", b"x"),
        ("COPY t FROM STDIN WITH (FORMAT 'csv', HEADER True)", "csv", True, b",", b""),  # asyncpg's quoting
        ("COPY t FROM STDIN (FORMAT text, HEADER off, DELIMITER E'\\x7c')", "text", False, b"|", b"\\N"),
        ("COPY t FROM STDIN (FORMAT binary)", "binary", False, b"\t", b"\\N"),
        ("COPY t FROM STDIN BINARY", "binary", False, b"\t", b"\\N"),
    ],
)
def test_statement_options(sql: str, fmt: str, header: bool, delimiter: bytes, null: bytes) -> None:
    stmt = parse_copy(sql)
    assert stmt.is_from
    assert (stmt.options.format, stmt.options.header, stmt.options.delimiter, stmt.options.null) == (
        fmt,
        header,
        delimiter,
        null,
    )


def test_statement_targets() -> None:
    stmt = parse_copy('COPY "public"."My Table" ("a", B, c) FROM STDIN')
    assert (stmt.table, stmt.schema, stmt.columns) == ("My Table", None, ("a", "b", "c"))
    assert (stmt.table_sql, stmt.columns_sql) == ('"public"."My Table"', '"a", B, c')
    assert parse_copy("COPY temp.t FROM STDIN").schema == "temp"
    out = parse_copy(
        "COPY (SELECT a, (b) FROM t WHERE x = ')' -- )\n) TO STDOUT WITH (FORMAT csv, FORCE_QUOTE *)"
    )
    assert not out.is_from
    assert out.query == "SELECT a, (b) FROM t WHERE x = ')' -- )"
    assert out.options.force_quote_all
    legacy = parse_copy("COPY t TO STDOUT CSV HEADER QUOTE AS '''' FORCE QUOTE a, b")
    assert (legacy.options.quote, legacy.options.escape, legacy.options.force_quote) == (
        b"'",
        b"'",
        ("a", "b"),
    )
    assert parse_copy("COPY t FROM STDIN (FORMAT csv, HEADER match)").options.header_match
    assert parse_copy("COPY t FROM STDIN CSV FORCE NOT NULL a").options.force_not_null == ("a",)


@pytest.mark.parametrize(
    ("sql", "code"),
    [
        ("COPY t FROM '/etc/passwd'", "42501"),
        ("COPY t TO '/tmp/out'", "42501"),
        ("COPY t FROM PROGRAM 'id'", "42501"),
        ("COPY t TO PROGRAM 'rm -rf /' (FORMAT csv)", "42501"),
        ("COPY t FROM STDIN (FORMAT xml)", "22023"),
        ("COPY t FROM STDIN (FORMAT binary, HEADER)", "42601"),
        ("COPY t FROM STDIN (QUOTE '''')", "0A000"),
        ("COPY t FROM STDIN (DELIMITER '||')", "0A000"),
        ("COPY t FROM STDIN (DELIMITER 'a')", "22023"),
        ("COPY t FROM STDIN (FORMAT csv, DELIMITER '\"')", "22023"),
        ("COPY t FROM STDIN (FORMAT csv, FORCE_QUOTE *)", "0A000"),
        ("COPY t TO STDOUT (FORMAT csv, FORCE_NULL (a))", "0A000"),
        ("COPY t TO STDOUT (HEADER match)", "0A000"),
        ("COPY t FROM STDIN (FORMAT csv, FORMAT text)", "42601"),
        ("COPY t FROM STDIN (COLOUR 'blue')", "42601"),
        ("COPY t FROM STDIN (ENCODING 'latin1')", "0A000"),
        ("COPY t FROM STDIN WITH OIDS", "0A000"),
        ("COPY t FROM STDIN WHERE a > 1", "0A000"),
        ("COPY (SELECT 1) FROM STDIN", "42601"),
        ("COPY t FROM", "42601"),
        ("COPY t INTO STDIN", "42601"),
        ("COPY t FROM STDIN extra", "42601"),
    ],
)
def test_statement_errors(sql: str, code: str) -> None:
    with pytest.raises(CopyError) as caught:
        parse_copy(sql)
    assert caught.value.code == code, caught.value.message


def test_server_files_are_refused_with_a_hint() -> None:
    with pytest.raises(CopyError) as caught:
        parse_copy("COPY t FROM '/etc/passwd' (FORMAT nonsense)")  # refused before the options are read
    assert caught.value.code == "42501"
    assert "\\copy" in (caught.value.hint or "")


# ---------------------------------------------------------------------------------------- text format
def test_text_rows() -> None:
    data = b"1\tplain\t\\N\n2\ttab\\there\\nnewline\t\\\\N\n3\t\t\\x41\\101\\b\\f\\v\\r\\q\n"
    assert values(TEXT, "abc", data) == [
        [b"1", b"plain", None],
        [b"2", b"tab\there\nnewline", b"\\N"],  # an escaped backslash before N: not NULL
        [b"3", b"", b"AA\b\f\v\rq"],
    ]


def test_text_line_endings_end_marker_and_escaped_newlines() -> None:
    assert values(TEXT, "ab", b"1\tx\r\n2\ty") == [[b"1", b"x"], [b"2", b"y"]]  # CRLF; last line unterminated
    assert values(TEXT, "ab", b"1\tx\n\\.\n2\tignored\n") == [[b"1", b"x"]]
    assert values(TEXT, "ab", b"1\ta\\\nb\n") == [[b"1", b"a\nb"]]  # backslash-newline is a newline in data
    assert values(TEXT, "ab", b"1\ta\\\\\n2\tb\n") == [[b"1", b"a\\"], [b"2", b"b"]]
    delimited = CopyOptions(delimiter=b",")
    assert values(delimited, "ab", b"1,a\\,b\n") == [[b"1", b"a,b"]]  # an escaped delimiter is data


def test_text_header_and_its_match() -> None:
    assert values(CopyOptions(header=True), "ab", b"a\tb\n1\t2\n") == [[b"1", b"2"]]
    rows = parse_all(CopyOptions(header=True), "ab", b"a\tb\n1\t2\n3\t4\n")
    assert [row.line for row in rows] == [2, 3]
    matching = CopyOptions(header=True, header_match=True)
    assert values(matching, "ab", b"a\tb\n1\t2\n") == [[b"1", b"2"]]
    assert "column name mismatch" in error(matching, "ab", b"a\tc\n1\t2\n").message


def test_text_column_count_errors_name_the_line() -> None:
    extra = error(TEXT, "ab", b"1\t2\n1\t2\t3\n")
    assert (extra.code, extra.message, extra.context) == (
        "22P04",
        "extra data after last expected column",
        "line 2",
    )
    missing = error(TEXT, "ab", b"1\n")
    assert (missing.message, missing.context) == ('missing data for column "b"', "line 1")


def test_unescape_octal_and_hex() -> None:
    assert unescape_text(b"\\0\\7\\77\\377\\400x") == b"\x00\x07\x3f\xff\x00x"  # 3 digits at most, mod 256
    assert unescape_text(b"\\x4\\x41\\x414\\xg") == b"\x04AA4xg"  # \x without a hex digit: a plain x


# ---------------------------------------------------------------------------------------- CSV
def test_csv_rows() -> None:
    data = b'1,"a, b","say ""hi""",,""\r\n2,"two\nlines",x,"",\n'
    assert values(CSV, "abcde", data) == [
        [b"1", b"a, b", b'say "hi"', None, b""],  # unquoted empty: NULL; quoted empty: empty string
        [b"2", b"two\nlines", b"x", b"", None],
    ]
    rows = parse_all(
        CopyOptions(format="csv", delimiter=b",", null=b"", header=True), "ab", b'a,b\n1,"x\ny"\n2,z\n'
    )
    assert [row.line for row in rows] == [2, 3]  # a record spanning lines counts once


def test_csv_quote_escape_null_and_forcing() -> None:
    own_escape = CopyOptions(format="csv", delimiter=b",", null=b"", escape=b"\\")
    assert values(own_escape, "ab", b'"a\\"b\\\\c",d\n') == [[b'a"b\\c', b"d"]]
    null_word = CopyOptions(format="csv", delimiter=b",", null=b"NULL")
    assert values(null_word, "ab", b'NULL,"NULL"\n,x\n') == [[None, b"NULL"], [b"", b"x"]]
    forced = CopyOptions(format="csv", delimiter=b",", null=b"", force_not_null=("a",), force_null=("b",))
    assert values(forced, "ab", b',""\n') == [[b"", None]]
    assert values(CSV, "ab", b"1,2\n\\.\n3,4\n") == [[b"1", b"2"]]
    assert values(CSV, "a", b'"\\."\n') == [[b"\\."]]  # quoted, it is data
    assert values(CSV, "ab", b'a"b,c"d,e\n') == [[b"ab,cd", b"e"]]  # quotes may start mid-field


def test_csv_errors() -> None:
    unterminated = error(CSV, "ab", b'1,"open\n')
    assert (unterminated.code, unterminated.message) == ("22P04", "unterminated CSV quoted field")
    assert error(CSV, "ab", b"1,2,3\n").message == "extra data after last expected column"


# ---------------------------------------------------------------------------------------- binary
def binary_data(rows: list[Values], *, trailer: bool = True) -> bytes:
    out = BINARY_SIGNATURE + struct.pack("!ii", 0, 0)
    for row in rows:
        out += struct.pack("!h", len(row))
        for v in row:
            out += struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v
    return out + (struct.pack("!h", -1) if trailer else b"")


def test_binary_rows() -> None:
    rows: list[Values] = [[b"\x00\x00\x00\x01", None], [b"", b"text"]]
    assert values(BINARY, "ab", binary_data(rows)) == rows
    assert values(BINARY, "ab", binary_data(rows, trailer=False)) == rows  # PostgreSQL accepts that too
    extension = BINARY_SIGNATURE + struct.pack("!ii", 0, 3) + b"xyz" + struct.pack("!h", -1)
    assert values(BINARY, "ab", extension) == []
    assert values(BINARY, "ab", binary_data(rows) + b"after the trailer") == rows


def test_binary_errors() -> None:
    assert error(BINARY, "ab", b"PGCOPY\nnot really").message == "COPY file signature not recognized"
    wrong = error(BINARY, "ab", binary_data([[b"1", b"2"], [b"1"]]))
    assert (wrong.message, wrong.context) == ("row field count is 1, expected 2", "line 2")
    assert error(BINARY, "ab", binary_data([[b"12", b"34"]])[:-5]).message == "unexpected EOF in COPY data"
    oids = BINARY_SIGNATURE + struct.pack("!ii", 1 << 16, 0)
    assert error(BINARY, "ab", oids).code == "0A000"


# ---------------------------------------------------------------------------------------- out
def test_encoder_text_and_csv() -> None:
    text = RowEncoder(CopyOptions(header=True), ["a", "b"])
    assert text.header() == b"a\tb\n"
    assert text.row([b"x\ty\\z\n", None]) == b"x\\ty\\\\z\\n\t\\N\n"
    assert RowEncoder(CopyOptions(delimiter=b","), ["a", "b"]).row([b"1,2", b""]) == b"1\\,2,\n"
    csv = RowEncoder(CopyOptions(format="csv", delimiter=b",", null=b"", header=True), ["a", "b,c"])
    assert csv.header() == b'a,"b,c"\n'
    assert csv.row([b'say "hi"', b""]) == b'"say ""hi""",""\n'
    assert csv.row([None, b"line\nbreak"]) == b',"line\nbreak"\n'
    forced = RowEncoder(CopyOptions(format="csv", delimiter=b",", null=b"", force_quote=("B",)), ["a", "b"])
    assert forced.row([b"1", b"2"]) == b'1,"2"\n'
    assert RowEncoder(CSV, ["a"]).row([b"\\."]) == b'"\\."\n'
    escaped = RowEncoder(CopyOptions(format="csv", delimiter=b",", null=b"", escape=b"\\"), ["a"])
    assert escaped.row([b'a"b\\c']) == b'"a\\"b\\\\c"\n'


def test_encoder_binary() -> None:
    enc = RowEncoder(BINARY, ["a", "b"])
    data = (enc.header() or b"") + enc.row([b"\x01", None]) + (enc.trailer() or b"")
    assert data == binary_data([[b"\x01", None]])


# ---------------------------------------------------------------------------------------- round trips
cells = st.one_of(st.none(), st.binary(max_size=12))


def table(width: int) -> st.SearchStrategy[list[Values]]:
    return st.lists(st.lists(cells, min_size=width, max_size=width), max_size=8)


@settings(max_examples=300, deadline=None)
@given(
    st.integers(1, 4).flatmap(lambda w: st.tuples(st.just(w), table(w))),
    st.sampled_from(["text", "csv", "binary"]),
    st.sampled_from([b"\t", b",", b"|", b";"]),
    st.booleans(),
    st.data(),
)
def test_round_trip(
    shape: tuple[int, list[Values]], fmt: str, delimiter: bytes, header: bool, data: st.DataObject
) -> None:
    width, rows = shape
    csv = fmt == "csv"
    if fmt == "binary":
        options = BINARY
    else:
        options = CopyOptions(
            format=fmt,
            delimiter=delimiter,
            null=b"" if csv else b"\\N",
            header=header,
        )
    columns = [f"c{i}" for i in range(width)]
    enc = RowEncoder(options, columns)
    encoded = (enc.header() or b"") + b"".join(enc.row(r) for r in rows) + (enc.trailer() or b"")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(encoded)), max_size=4)))
    pieces = [encoded[a:b] for a, b in zip([0, *cuts], [*cuts, len(encoded)], strict=True)]
    parser = row_parser(options, columns)
    parsed: list[CopyRow] = []
    for piece in pieces:
        parsed += parser.feed(piece)
    parsed += parser.finish()
    assert [row.values for row in parsed] == rows


# ---------------------------------------------------------------------------------------- messages
def test_copy_messages() -> None:
    frames = bp.BackendParser()
    frames.feed(
        codec.copy_in_response(False, 2)
        + codec.copy_out_response(True, 1)
        + codec.copy_data(b"row\n")
        + codec.copy_done()
        + codec.error_response("ERROR", "22P02", "bad", where="COPY t, line 3")
    )
    got = frames.messages()
    assert got[:4] == [
        ("G", b"\x00\x00\x02\x00\x00\x00\x00"),
        ("H", b"\x01\x00\x01\x00\x01"),
        ("d", b"row\n"),
        ("c", b""),
    ]
    assert bp.decode_error_response(got[4][1])["W"] == "COPY t, line 3"
