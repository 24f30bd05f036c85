"""The HTTP fast path's parser under arbitrary input: it parses a request, asks for more bytes, or hands the
connection to aiohttp (``_HandOver``), and nothing else, whether the bytes come whole or in pieces."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlite_ha.server.http.fast import MAX_HEAD, _HandOver, _Request, parse

MAX_BODY = 64

_HEADS = [
    b"POST /query HTTP/1.1\r\n",
    b"POST /databases/app.db HTTP/1.1\r\n",
    b"POST / HTTP/1.1\r\n",
    b"GET /healthz HTTP/1.1\r\n",
]
_FIELDS = [
    b"Host: t\r\n",
    b"Content-Length: 2\r\n",
    b"Content-Length: 99999999999999999999\r\n",
    b"Content-Length: -1\r\n",
    b"Connection: close\r\n",
    b"Connection: keep-alive, close\r\n",
    b"Authorization: Bearer x\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b" folded\r\n",
    b"X: \xff\r\n",
    b"\r\n",
]

# Near-valid requests: a request line, some header lines, a body, and stray bytes anywhere.
near_valid = st.builds(
    lambda head, fields, body, junk, at: _splice(head + b"".join(fields) + b"\r\n" + body, junk, at),
    st.sampled_from(_HEADS),
    st.lists(st.sampled_from(_FIELDS), max_size=6),
    st.binary(max_size=8),
    st.binary(max_size=4),
    st.integers(min_value=0, max_value=400),
)


def _splice(data: bytes, junk: bytes, at: int) -> bytes:
    at = min(at, len(data))
    return data[:at] + junk + data[at:]


def outcomes(data: bytes, cuts: list[int]) -> list[object]:
    """Feed ``data`` in pieces split at ``cuts``, calling ``parse`` after each piece as a connection does;
    the requests parsed, ending with "handover" or "more"."""
    buf = bytearray()
    got: list[object] = []
    start = 0
    for end in [*sorted(set(cuts)), len(data)]:
        buf += data[start:end]
        start = max(start, end)
        while True:
            try:
                request = parse(buf, MAX_BODY)
            except _HandOver:
                return [*got, "handover"]
            if request is None:
                break
            assert isinstance(request, _Request)
            assert len(request.body) <= MAX_BODY
            got.append((request.database, request.body, request.close, request.auth))
    return [*got, "more"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.binary(max_size=MAX_HEAD + 200), near_valid), cuts=st.lists(st.integers(0, 9000)))
def test_parse_whole_or_in_pieces_agrees(data: bytes, cuts: list[int]) -> None:
    whole = outcomes(data, [])
    pieces = outcomes(data, [c for c in cuts if c <= len(data)])
    # In pieces a request may be served before later bytes show the rest must go to aiohttp; what was
    # parsed must be the same requests, in order, and the end the same.
    assert pieces == whole


@settings(max_examples=100)
@given(near_valid)
def test_a_buffer_is_consumed_only_by_whole_requests(data: bytes) -> None:
    buf = bytearray(data)
    try:
        request = parse(buf, MAX_BODY)
    except _HandOver:
        assert buf == data  # handed over with every byte, for aiohttp to read from the start
        return
    if request is None:
        assert buf == data
    else:
        assert data.endswith(bytes(buf))
        assert len(buf) < len(data)


def test_a_head_that_never_ends_is_handed_over() -> None:
    buf = bytearray(b"POST /query HTTP/1.1\r\n" + b"X: y\r\n" * (MAX_HEAD // 6 + 1))
    try:
        parse(buf, MAX_BODY)
    except _HandOver:
        return
    raise AssertionError("a head longer than MAX_HEAD must go to aiohttp")
