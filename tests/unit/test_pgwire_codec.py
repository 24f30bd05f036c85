"""The PG wire codec: frontend messages from hand-built bytes, encoders by round trip, every malformation."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sqlite_ha.server.pgwire.wire import backend_parser as bp
from sqlite_ha.server.pgwire.wire import codec
from sqlite_ha.server.pgwire.wire.codec import (
    Bind,
    CancelRequest,
    Close,
    CopyData,
    CopyDone,
    CopyFail,
    Describe,
    Execute,
    Field,
    Flush,
    FrontendMessage,
    FrontendParser,
    FunctionCall,
    GSSENCRequest,
    Parse,
    PasswordMessage,
    Phase,
    ProtocolError,
    Query,
    SSLRequest,
    StartupMessage,
    Sync,
    Terminate,
)


def i16(n: int) -> bytes:
    return struct.pack("!h", n)


def i32(n: int) -> bytes:
    return struct.pack("!i", n)


def u32(n: int) -> bytes:
    return struct.pack("!I", n)


def typed(type_byte: bytes, body: bytes) -> bytes:
    return type_byte + i32(len(body) + 4) + body


def packet(code: int, body: bytes = b"") -> bytes:
    return i32(len(body) + 8) + u32(code) + body


STARTUP_BYTES = packet(196608, b"user\0alice\0database\0db\0\0")
STARTUP = StartupMessage(protocol=196608, params={"user": "alice", "database": "db"})


def typed_parser(max_message_size: int = 64 * 1024 * 1024) -> FrontendParser:
    parser = FrontendParser(max_message_size)
    parser.feed(STARTUP_BYTES)
    assert parser.next_message() == STARTUP
    assert parser.phase is Phase.TYPED
    return parser


def drain(parser: FrontendParser) -> list[FrontendMessage]:
    out = []
    while (message := parser.next_message()) is not None:
        out.append(message)
    return out


# --- valid frontend messages, built by hand from the protocol documentation ---------------------------------

TYPED_CASES: list[tuple[bytes, FrontendMessage]] = [
    (typed(b"Q", b"select 1\0"), Query(sql="select 1")),
    (typed(b"Q", b"\0"), Query(sql="")),
    (typed(b"Q", "select 'ü'\0".encode()), Query(sql="select 'ü'")),
    (typed(b"P", b"s1\0select $1, $2\0" + struct.pack("!H", 2) + u32(23) + u32(4294967295)),
     Parse(name="s1", sql="select $1, $2", param_oids=(23, 4294967295))),
    (typed(b"P", b"\0select 1\0" + struct.pack("!H", 0)), Parse(name="", sql="select 1", param_oids=())),
    (
        typed(
            b"B",
            b"p1\0s1\0" + struct.pack("!H", 1) + i16(1) + struct.pack("!H", 3)
            + i32(2) + b"ab" + i32(-1) + i32(0) + struct.pack("!H", 2) + i16(0) + i16(1),
        ),
        Bind(
            portal="p1", statement="s1", param_formats=(1,), params=(b"ab", None, b""), result_formats=(0, 1)
        ),
    ),
    (
        typed(b"B", b"\0\0" + struct.pack("!H", 2) + i16(0) + i16(1) + struct.pack("!H", 2)
              + i32(1) + b"x" + i32(1) + b"\0" + struct.pack("!H", 0)),
        Bind(portal="", statement="", param_formats=(0, 1), params=(b"x", b"\0"), result_formats=()),
    ),
    (typed(b"B", b"\0\0" + b"\0\0" + b"\0\0" + b"\0\0"),
     Bind(portal="", statement="", param_formats=(), params=(), result_formats=())),
    (typed(b"D", b"Ss1\0"), Describe(kind="S", name="s1")),
    (typed(b"D", b"P\0"), Describe(kind="P", name="")),
    (typed(b"E", b"p1\0" + i32(100)), Execute(portal="p1", max_rows=100)),
    (typed(b"E", b"\0" + i32(0)), Execute(portal="", max_rows=0)),
    (typed(b"S", b""), Sync()),
    (typed(b"H", b""), Flush()),
    (typed(b"C", b"Ss1\0"), Close(kind="S", name="s1")),
    (typed(b"C", b"Pp\0"), Close(kind="P", name="p")),
    (typed(b"p", b"secret\0"), PasswordMessage(data=b"secret\0")),
    (typed(b"d", b"1\t2\n"), CopyData(data=b"1\t2\n")),
    (typed(b"c", b""), CopyDone()),
    (typed(b"f", b"aborted\0"), CopyFail(message="aborted")),
    (
        typed(b"F", u32(1598) + struct.pack("!H", 1) + i16(1) + struct.pack("!H", 2)
              + i32(-1) + i32(2) + b"hi" + i16(1)),
        FunctionCall(function_oid=1598, arg_formats=(1,), args=(None, b"hi"), result_format=1),
    ),
    (typed(b"X", b""), Terminate()),
]  # fmt: skip
CASE_IDS = [f"{i}-{type(m).__name__}" for i, (_, m) in enumerate(TYPED_CASES)]


@pytest.mark.parametrize(("data", "expected"), TYPED_CASES, ids=CASE_IDS)
def test_typed_message_fed_whole(data: bytes, expected: FrontendMessage) -> None:
    parser = typed_parser()
    parser.feed(data)
    assert parser.next_message() == expected
    assert parser.next_message() is None
    assert parser.buffered == 0


@pytest.mark.parametrize(("data", "expected"), TYPED_CASES, ids=CASE_IDS)
def test_typed_message_fed_byte_by_byte(data: bytes, expected: FrontendMessage) -> None:
    parser = typed_parser()
    for i in range(len(data) - 1):
        parser.feed(data[i : i + 1])
        assert parser.next_message() is None
    parser.feed(data[-1:])
    assert parser.next_message() == expected


@pytest.mark.parametrize(("data", "expected"), TYPED_CASES, ids=CASE_IDS)
def test_typed_message_with_trailing_partial_message(data: bytes, expected: FrontendMessage) -> None:
    parser = typed_parser()
    parser.feed(data + b"Q\0\0")
    assert parser.next_message() == expected
    if isinstance(expected, Terminate):
        with pytest.raises(ProtocolError, match="3 bytes received after Terminate"):
            parser.next_message()
        return
    assert parser.next_message() is None
    parser.feed(b"\0\x05\0")
    assert parser.next_message() == Query(sql="")


@pytest.mark.parametrize(("data", "expected"), TYPED_CASES, ids=CASE_IDS)
def test_encode_frontend_produces_the_hand_built_bytes(data: bytes, expected: FrontendMessage) -> None:
    assert bp.encode_frontend(expected) == data


def test_many_messages_in_one_feed() -> None:
    non_final = [(d, m) for d, m in TYPED_CASES if not isinstance(m, Terminate)]
    parser = FrontendParser()
    parser.feed(STARTUP_BYTES + b"".join(d for d, _ in non_final) + typed(b"X", b""))
    assert drain(parser) == [STARTUP, *(m for _, m in non_final), Terminate()]
    assert parser.phase is Phase.CLOSED


def test_large_pipeline_compacts_the_buffer() -> None:
    query = typed(b"Q", b"x" * 1000 + b"\0")
    parser = typed_parser()
    parser.feed(query * 200)
    assert len(drain(parser)) == 200
    assert parser.buffered == 0


# --- the startup phase ------------------------------------------------------------------------------------


def test_ssl_request_then_startup() -> None:
    parser = FrontendParser()
    parser.feed(packet(80877103))
    assert parser.next_message() == SSLRequest()
    assert parser.phase is Phase.STARTUP
    assert parser.next_message() is None
    parser.feed(STARTUP_BYTES)
    assert parser.next_message() == STARTUP
    assert parser.phase is Phase.TYPED


def test_gssenc_then_ssl_then_startup_in_one_feed() -> None:
    parser = FrontendParser()
    parser.feed(packet(80877104) + packet(80877103) + STARTUP_BYTES + typed(b"S", b""))
    assert drain(parser) == [GSSENCRequest(), SSLRequest(), STARTUP, Sync()]


def test_bytes_buffered_after_ssl_request_are_visible() -> None:
    """The session must refuse TLS when a client pipelined cleartext after SSLRequest (CVE-2021-23214)."""
    parser = FrontendParser()
    parser.feed(packet(80877103) + STARTUP_BYTES)
    assert parser.next_message() == SSLRequest()
    assert parser.buffered == len(STARTUP_BYTES)


def test_cancel_request_closes_the_parser() -> None:
    parser = FrontendParser()
    parser.feed(packet(80877102, u32(4242) + u32(0xDEADBEEF)))
    assert parser.next_message() == CancelRequest(pid=4242, secret=0xDEADBEEF)
    assert parser.phase is Phase.CLOSED
    assert parser.next_message() is None
    parser.feed(b"x")
    with pytest.raises(ProtocolError, match="1 bytes received after CancelRequest"):
        parser.next_message()


def test_startup_byte_by_byte() -> None:
    parser = FrontendParser()
    for byte in STARTUP_BYTES[:-1]:
        parser.feed(bytes([byte]))
        assert parser.next_message() is None
    parser.feed(STARTUP_BYTES[-1:])
    assert parser.next_message() == STARTUP


def test_startup_without_parameters_and_newer_minor_version() -> None:
    parser = FrontendParser()
    parser.feed(packet(196610, b"\0"))
    assert parser.next_message() == StartupMessage(protocol=196610, params={})


def test_protocol_2_is_refused_clearly() -> None:
    parser = FrontendParser()
    parser.feed(packet(131072, b"user\0a\0\0"))
    with pytest.raises(ProtocolError, match=r"unsupported frontend protocol 2\.0.*3\.0") as info:
        parser.next_message()
    assert info.value.code == "0A000"
    assert info.value.fatal


def test_unknown_special_code_is_refused() -> None:
    parser = FrontendParser()
    parser.feed(packet((1234 << 16) | 5681))
    with pytest.raises(ProtocolError, match=r"1234\.5681") as info:
        parser.next_message()
    assert info.value.code == "0A000"


STARTUP_ERRORS: list[tuple[bytes, str, str]] = [
    (i32(7) + u32(196608), "08P01", "invalid startup packet length 7"),
    (i32(-1), "08P01", "invalid startup packet length -1"),
    (i32(10_001), "54000", "startup packet of 10001 bytes exceeds the limit of 10000"),
    (i32(12) + u32(80877103) + b"\0\0\0\0", "08P01", "SSLRequest packet has length 12, expected 8"),
    (i32(12) + u32(80877104) + b"\0\0\0\0", "08P01", "GSSENCRequest packet has length 12, expected 8"),
    (i32(12) + u32(80877102) + u32(1), "08P01", "CancelRequest packet has length 12, expected 16"),
    (packet(196608, b"user\0alice\0"), "08P01", "ends without the NUL that terminates the parameter list"),
    (packet(196608, b""), "08P01", "ends without the NUL that terminates the parameter list"),
    (packet(196608, b"user\0alice"), "08P01", "value of parameter 'user' is not NUL-terminated"),
    (packet(196608, b"user"), "08P01", "parameter name is not NUL-terminated"),
    (packet(196608, b"user\0al\xffice\0\0"), "22021", "value of parameter 'user' is not valid UTF-8"),
    (packet(196608, b"user\0a\0\0junk"), "08P01", "StartupMessage message: 4 bytes of trailing garbage"),
]


@pytest.mark.parametrize(("data", "code", "problem"), STARTUP_ERRORS)
def test_startup_malformations_are_fatal(data: bytes, code: str, problem: str) -> None:
    parser = FrontendParser()
    parser.feed(data)
    with pytest.raises(ProtocolError) as info:
        parser.next_message()
    assert info.value.code == code
    assert problem in info.value.message
    assert info.value.fatal
    assert parser.phase is Phase.FAILED


def test_startup_size_limit_follows_a_smaller_max_message_size() -> None:
    parser = FrontendParser(max_message_size=100)
    parser.feed(i32(101))
    with pytest.raises(ProtocolError, match="exceeds the limit of 100 bytes"):
        parser.next_message()


def test_typed_message_before_startup_is_a_bad_startup_packet() -> None:
    parser = FrontendParser()
    parser.feed(typed(b"Q", b"select 1\0"))
    with pytest.raises(ProtocolError) as info:
        parser.next_message()
    assert info.value.fatal


def test_max_message_size_must_fit_a_header() -> None:
    with pytest.raises(ValueError, match="at least 5"):
        FrontendParser(max_message_size=4)


# --- malformed typed messages -----------------------------------------------------------------------------

U16 = struct.Struct("!H").pack

# (bytes, SQLSTATE, fatal, what the message must say)
TYPED_ERRORS: list[tuple[bytes, str, bool, str]] = [
    (b"z\0\0\0\x04", "08P01", True, "invalid frontend message type 'z' (0x7a)"),
    (b"Q" + i32(3), "08P01", True, "Query message has invalid length 3"),
    (b"Q" + i32(-5), "08P01", True, "Query message has invalid length -5"),
    (b"S" + i32(10_001), "54000", True, "Sync message of 10001 bytes exceeds the limit of 10000 bytes"),
    (typed(b"Q", b"select 1"), "08P01", False, "Query message: query string is not NUL-terminated"),
    (typed(b"Q", b"select \xc3\0"), "22021", False, "Query message: query string is not valid UTF-8"),
    (typed(b"Q", b"select 1\0x"), "08P01", False, "Query message: 1 bytes of trailing garbage"),
    (typed(b"P", b"s\0select 1\0" + U16(3) + u32(23)), "08P01", False,
     "Parse message: 3 parameter types announced, but the message ends after 1"),
    (typed(b"P", b"s\0select 1\0\0"), "08P01", False, "Parse message: ends inside parameter type count"),
    (typed(b"P", b"s\0select 1"), "08P01", False, "Parse message: query string is not NUL-terminated"),
    (typed(b"B", b"\0\0" + U16(0) + U16(3) + i32(1) + b"x"), "08P01", False,
     "Bind message: 3 parameter values announced, but the message ends after 1"),
    (typed(b"B", b"\0\0" + U16(0) + U16(1) + i32(-2) + U16(0)), "08P01", False,
     "Bind message: parameter value 0 has negative length -2"),
    (typed(b"B", b"\0\0" + U16(0) + U16(1) + i32(10) + b"abc"), "08P01", False,
     "Bind message: parameter value 0 announces 10 bytes, but only 3 are left"),
    (typed(b"B", b"\0\0" + U16(1) + i16(2) + U16(1) + i32(-1) + U16(0)), "08P01", False,
     "Bind message: parameter format code 2 at position 0 is neither 0 (text) nor 1 (binary)"),
    (typed(b"B", b"\0\0" + U16(0) + U16(0) + U16(2) + i16(0) + i16(7)), "08P01", False,
     "Bind message: result format code 7 at position 1 is neither"),
    (typed(b"B", b"\0\0" + U16(2) + i16(0) + i16(0) + U16(3)), "08P01", False,
     "Bind message: 2 parameter format codes for 3 parameter values (expected 0, 1 or 3)"),
    (typed(b"B", b"\0\0" + U16(2) + i16(0)), "08P01", False,
     "Bind message: ends inside 2 parameter format codes"),
    (typed(b"B", b"\0\0" + U16(0) + U16(0)), "08P01", False, "Bind message: ends inside result format count"),
    (typed(b"B", b"p\0s\0" + U16(0) + U16(0) + U16(0) + b"!!"), "08P01", False,
     "Bind message: 2 bytes of trailing garbage"),
    (typed(b"B", b"\xff\0\0" + U16(0) + U16(0) + U16(0)), "22021", False,
     "Bind message: portal name is not valid UTF-8"),
    (typed(b"D", b"Xs\0"), "08P01", False, "Describe message: kind 'X' is neither 'S' (statement) nor 'P'"),
    (typed(b"D", b""), "08P01", False, "Describe message: ends inside kind"),
    (typed(b"D", b"S"), "08P01", False, "Describe message: name is not NUL-terminated"),
    (typed(b"C", b"Qs\0"), "08P01", False, "Close message: kind 'Q' is neither"),
    (typed(b"E", b"p\0\0\0"), "08P01", False,
     "Execute message: ends inside row limit (4 bytes needed, 2 left)"),
    (typed(b"S", b"\0"), "08P01", False, "Sync message: 1 bytes of trailing garbage"),
    (typed(b"X", b"bye"), "08P01", False, "Terminate message: 3 bytes of trailing garbage"),
    (typed(b"f", b"oops"), "08P01", False, "CopyFail message: error message is not NUL-terminated"),
    (typed(b"F", u32(1) + U16(0) + U16(0) + i16(3)), "08P01", False,
     "FunctionCall message: result format 3 is neither"),
    (typed(b"F", u32(1) + U16(0) + U16(2) + i32(-1)), "08P01", False,
     "FunctionCall message: 2 argument values announced, but the message ends after 1"),
]  # fmt: skip


@pytest.mark.parametrize(("data", "code", "fatal", "problem"), TYPED_ERRORS)
def test_typed_malformations(data: bytes, code: str, fatal: bool, problem: str) -> None:
    parser = typed_parser()
    parser.feed(data)
    with pytest.raises(ProtocolError) as info:
        parser.next_message()
    assert info.value.code == code
    assert problem in info.value.message, info.value.message
    assert str(info.value) == info.value.message
    assert info.value.fatal is fatal
    parser.feed(typed(b"S", b""))
    if fatal:
        with pytest.raises(ProtocolError) as again:
            parser.next_message()
        assert again.value is info.value
        assert parser.phase is Phase.FAILED
        assert parser.buffered == 0
    else:
        assert parser.next_message() == Sync()  # the bad message was consumed; framing is intact


def test_unknown_type_is_rejected_from_its_first_byte() -> None:
    parser = typed_parser()
    parser.feed(b"\x00")
    with pytest.raises(ProtocolError, match=r"invalid frontend message type '\\x00' \(0x00\)"):
        parser.next_message()


def test_oversized_message_is_rejected_from_its_header_alone() -> None:
    parser = typed_parser(max_message_size=1000)
    parser.feed(b"Q" + i32(1001))
    with pytest.raises(ProtocolError) as info:
        parser.next_message()
    assert info.value.code == "54000"
    assert info.value.message == "Query message of 1001 bytes exceeds the limit of 1000 bytes"
    parser.feed(b"x" * 1000)  # the body that follows is not buffered
    assert parser.buffered == 0


def test_message_of_exactly_the_limit_is_accepted() -> None:
    parser = typed_parser(max_message_size=100)
    parser.feed(typed(b"Q", b"x" * 95 + b"\0"))
    assert parser.next_message() == Query(sql="x" * 95)


def test_password_messages_are_capped_below_the_general_limit() -> None:
    parser = typed_parser()
    parser.feed(b"p" + i32(65_536))
    with pytest.raises(ProtocolError, match="PasswordMessage message of 65536 bytes exceeds the limit"):
        parser.next_message()


# --- backend encoders, checked by decoding them -----------------------------------------------------------


def one(data: bytes) -> tuple[str, bytes]:
    parser = bp.BackendParser()
    parser.feed(data)
    messages = parser.messages()
    assert len(messages) == 1
    assert parser.next_message() is None
    return messages[0]


@pytest.mark.parametrize(
    ("data", "code", "payload"),
    [
        (codec.authentication_ok(), 0, b""),
        (codec.authentication_cleartext(), 3, b""),
        (codec.authentication_md5(b"\x01\x02\x03\x04"), 5, b"\x01\x02\x03\x04"),
        (codec.authentication_sasl_continue(b"r=abc,s=xyz,i=4096"), 11, b"r=abc,s=xyz,i=4096"),
        (codec.authentication_sasl_final(b"v=sig"), 12, b"v=sig"),
    ],
)
def test_authentication_requests(data: bytes, code: int, payload: bytes) -> None:
    type_, body = one(data)
    assert type_ == "R"
    assert bp.decode_authentication(body) == (code, payload)


def test_authentication_sasl_lists_mechanisms() -> None:
    type_, body = one(codec.authentication_sasl(["SCRAM-SHA-256", "OTHER"]))
    code, payload = bp.decode_authentication(body)
    assert (type_, code) == ("R", 10)
    assert bp.decode_sasl_mechanisms(payload) == ["SCRAM-SHA-256", "OTHER"]


def test_authentication_md5_needs_four_bytes_of_salt() -> None:
    with pytest.raises(ValueError, match="4 bytes, not 3"):
        codec.authentication_md5(b"abc")


def test_exact_bytes_of_fixed_messages() -> None:
    assert codec.authentication_ok() == b"R\0\0\0\x08\0\0\0\0"
    assert codec.ready_for_query("I") == b"Z\0\0\0\x05I"
    assert codec.parse_complete() == b"1\0\0\0\x04"
    assert codec.data_row([b"1", None]) == b"D\0\0\0\x0f\0\x02\0\0\0\x011\xff\xff\xff\xff"
    assert codec.ssl_refused() == b"N"
    assert codec.ssl_accepted() == b"S"


@pytest.mark.parametrize(
    ("data", "type_"),
    [
        (codec.empty_query_response(), "I"),
        (codec.parse_complete(), "1"),
        (codec.bind_complete(), "2"),
        (codec.close_complete(), "3"),
        (codec.no_data(), "n"),
        (codec.portal_suspended(), "s"),
    ],
)
def test_empty_messages(data: bytes, type_: str) -> None:
    assert one(data) == (type_, b"")


def test_parameter_status() -> None:
    type_, body = one(codec.parameter_status("client_encoding", "UTF8"))
    assert type_ == "S"
    assert bp.decode_parameter_status(body) == ("client_encoding", "UTF8")


def test_strings_with_nul_are_refused() -> None:
    with pytest.raises(ValueError, match="contains NUL"):
        codec.parameter_status("a\0b", "x")


def test_backend_key_data() -> None:
    type_, body = one(codec.backend_key_data(12345, 0xFFFFFFFF))
    assert type_ == "K"
    assert bp.decode_backend_key_data(body) == (12345, 0xFFFFFFFF)


def test_negotiate_protocol_version() -> None:
    type_, body = one(codec.negotiate_protocol_version(0, ["_pq_.compression"]))
    assert type_ == "v"
    assert bp.decode_negotiate_protocol_version(body) == (0, ("_pq_.compression",))


@pytest.mark.parametrize("status", ["I", "T", "E"])
def test_ready_for_query(status: str) -> None:
    type_, body = one(codec.ready_for_query(status))
    assert type_ == "Z"
    assert bp.decode_ready_for_query(body) == status


def test_ready_for_query_refuses_unknown_status() -> None:
    with pytest.raises(ValueError, match="'X'"):
        codec.ready_for_query("X")


def test_row_description() -> None:
    fields = [
        Field(name="id", type_oid=20, type_size=8),
        Field(name="naïve", type_oid=25, type_size=-1, type_modifier=-1, format=1, table_oid=16384, column=2),
        Field(name="", type_oid=4294967295, type_size=-2, type_modifier=12),
    ]
    type_, body = one(codec.row_description(fields))
    assert type_ == "T"
    assert bp.decode_row_description(body) == tuple(fields)
    assert bp.decode_row_description(one(codec.row_description([]))[1]) == ()


@pytest.mark.parametrize(
    "values",
    [[], [None], [b""], [b"1", None, b"abc"], [b"x" * 255, b"y" * 256, b"z" * 100_000], [None] * 1000],
)
def test_data_row(values: list[bytes | None]) -> None:
    type_, body = one(codec.data_row(values))
    assert type_ == "D"
    assert bp.decode_data_row(body) == tuple(values)


def test_command_complete() -> None:
    type_, body = one(codec.command_complete("INSERT 0 3"))
    assert type_ == "C"
    assert bp.decode_command_complete(body) == "INSERT 0 3"


def test_error_response_with_every_field() -> None:
    data = codec.error_response(
        "ERROR", "42P01", 'relation "t" does not exist', detail="d", hint="h ü", position=15
    )
    type_, body = one(data)
    assert type_ == "E"
    assert bp.decode_error_response(body) == {
        "S": "ERROR",
        "V": "ERROR",
        "C": "42P01",
        "M": 'relation "t" does not exist',
        "D": "d",
        "H": "h ü",
        "P": "15",
    }


def test_notice_response_with_required_fields_only() -> None:
    type_, body = one(codec.notice_response("WARNING", "01000", "careful"))
    assert type_ == "N"
    assert bp.decode_error_response(body) == {"S": "WARNING", "V": "WARNING", "C": "01000", "M": "careful"}


def test_error_response_escapes_nul_and_lone_surrogates() -> None:
    _, body = one(codec.error_response("ERROR", "XX000", "a\0b \udcff"))
    assert bp.decode_error_response(body)["M"] == "a\\0b ?"


def test_error_response_refuses_a_malformed_sqlstate() -> None:
    with pytest.raises(ValueError, match="SQLSTATE"):
        codec.error_response("ERROR", "4201", "x")


def test_parameter_description() -> None:
    type_, body = one(codec.parameter_description([23, 25, 4294967295]))
    assert type_ == "t"
    assert bp.decode_parameter_description(body) == (23, 25, 4294967295)


def test_backend_parser_splits_a_stream_and_reads_the_ssl_byte() -> None:
    stream = codec.ssl_refused() + codec.authentication_ok() + codec.ready_for_query("I")
    parser = bp.BackendParser()
    assert parser.read_byte() is None
    for byte in stream:
        parser.feed(bytes([byte]))
    assert parser.read_byte() == "N"
    assert parser.messages() == [("R", b"\0\0\0\0"), ("Z", b"I")]


def test_backend_parser_refuses_bad_lengths_and_bodies() -> None:
    parser = bp.BackendParser()
    parser.feed(b"Z" + i32(2))
    with pytest.raises(ProtocolError, match="invalid length 2"):
        parser.next_message()
    with pytest.raises(ProtocolError, match="ReadyForQuery message: transaction status 'Q'"):
        bp.decode_ready_for_query(b"Q")
    with pytest.raises(ProtocolError, match="DataRow message: 2 column values announced"):
        bp.decode_data_row(b"\0\x02" + i32(-1))


def test_startup_helper() -> None:
    parser = FrontendParser()
    parser.feed(bp.startup("bob", "main", application_name="t"))
    assert parser.next_message() == StartupMessage(
        protocol=196608, params={"user": "bob", "database": "main", "application_name": "t"}
    )


# --- properties -------------------------------------------------------------------------------------------

texts = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)), max_size=20)
values = st.lists(st.none() | st.binary(max_size=20), max_size=5)
format_code = st.sampled_from([0, 1])
int32 = st.integers(-(2**31), 2**31 - 1)
uint32 = st.integers(0, 2**32 - 1)


@st.composite
def binds(draw: st.DrawFn) -> Bind:
    params = tuple(draw(values))
    n_formats = draw(st.sampled_from(sorted({0, 1, len(params)})))
    return Bind(
        portal=draw(texts),
        statement=draw(texts),
        param_formats=tuple(draw(st.lists(format_code, min_size=n_formats, max_size=n_formats))),
        params=params,
        result_formats=tuple(draw(st.lists(format_code, max_size=4))),
    )


@st.composite
def function_calls(draw: st.DrawFn) -> FunctionCall:
    args = tuple(draw(values))
    n_formats = draw(st.sampled_from(sorted({0, 1, len(args)})))
    return FunctionCall(
        function_oid=draw(uint32),
        arg_formats=tuple(draw(st.lists(format_code, min_size=n_formats, max_size=n_formats))),
        args=args,
        result_format=draw(format_code),
    )


typed_messages: st.SearchStrategy[FrontendMessage] = st.one_of(
    st.builds(Query, sql=texts),
    st.builds(Parse, name=texts, sql=texts, param_oids=st.lists(uint32, max_size=4).map(tuple)),
    binds(),
    st.builds(Describe, kind=st.sampled_from("SP"), name=texts),
    st.builds(Execute, portal=texts, max_rows=int32),
    st.just(Sync()),
    st.just(Flush()),
    st.builds(Close, kind=st.sampled_from("SP"), name=texts),
    st.builds(PasswordMessage, data=st.binary(max_size=30)),
    st.builds(CopyData, data=st.binary(max_size=30)),
    st.just(CopyDone()),
    st.builds(CopyFail, message=texts),
    function_calls(),
)
startup_messages = st.builds(
    StartupMessage,
    protocol=st.integers(196608, 196611),
    params=st.dictionaries(texts.filter(bool), texts, max_size=4),
)


@settings(max_examples=300)
@given(
    pre=st.lists(st.sampled_from([SSLRequest(), GSSENCRequest()]), max_size=2),
    startup=startup_messages,
    messages=st.lists(typed_messages, max_size=12),
    terminate=st.booleans(),
    cuts=st.lists(st.integers(0, 2000), max_size=10),
)
def test_any_valid_stream_split_anywhere_parses_back(
    pre: list[FrontendMessage],
    startup: StartupMessage,
    messages: list[FrontendMessage],
    terminate: bool,
    cuts: list[int],
) -> None:
    expected = [*pre, startup, *messages, *([Terminate()] if terminate else [])]
    stream = b"".join(bp.encode_frontend(m) for m in expected)
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    parser = FrontendParser()
    got: list[FrontendMessage] = []
    for start, end in itertools.pairwise(bounds):
        parser.feed(stream[start:end])
        got.extend(drain(parser))
    assert got == expected
    assert parser.buffered == 0


def _survives(parser: FrontendParser, chunks: list[bytes]) -> None:
    """Feeding anything yields messages, None or ProtocolError, never another exception or a hang."""
    errors: list[ProtocolError] = []
    for chunk in chunks:
        parser.feed(chunk)
        while not (errors and errors[-1].fatal):
            try:
                if parser.next_message() is None:
                    break
            except ProtocolError as exc:
                errors.append(exc)
    assert all(e.message and len(e.code) == 5 for e in errors)


@settings(max_examples=300)
@given(chunks=st.lists(st.binary(max_size=40), max_size=6), max_size=st.sampled_from([64, 1000, 2**26]))
def test_garbage_in_startup_phase_raises_only_protocol_errors(chunks: list[bytes], max_size: int) -> None:
    _survives(FrontendParser(max_size), chunks)


@settings(max_examples=300)
@given(chunks=st.lists(st.binary(max_size=40), max_size=6), max_size=st.sampled_from([64, 1000, 2**26]))
def test_garbage_in_typed_phase_raises_only_protocol_errors(chunks: list[bytes], max_size: int) -> None:
    _survives(typed_parser(max_size), chunks)


@settings(max_examples=500)
@given(
    frames=st.lists(
        st.tuples(st.sampled_from(b"QPBDESHCXpdcfF"), st.binary(max_size=40)),
        min_size=1,
        max_size=5,
    )
)
def test_garbage_bodies_in_valid_frames_raise_only_protocol_errors(frames: list[tuple[int, bytes]]) -> None:
    _survives(typed_parser(), [typed(bytes([t]), body) for t, body in frames])


@settings(max_examples=300)
@given(body=st.binary(max_size=60))
def test_garbage_startup_bodies_raise_only_protocol_errors(body: bytes) -> None:
    _survives(FrontendParser(), [packet(196608, body)])
