"""The HTTP fast path (``server/http/fast.py``) against a real node, over raw sockets: what it serves itself,
what it hands to aiohttp, and that a connection handed over goes on being served."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from aiohttp import web, web_server

from sqlite_ha.server.http import fast
from sqlite_ha.server.http.fast import MAX_HEAD, _HandOver, parse
from sqlite_ha.testing import NodeProcess
from tests.conftest import NodeFactory


def post(body: bytes, *, path: str = "/query", headers: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n{headers}\r\n"
    ).encode() + body


def query(sql: str) -> bytes:
    return json.dumps({"sql": sql}).encode()


class Reader:
    """Reads HTTP/1.1 responses (Content-Length bodies) off one connection."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
        length = int(headers["content-length"])
        while len(self.buf) < length:
            self._more()
        body, self.buf = self.buf[:length], self.buf[length:]
        return int(lines[0].split(" ")[1]), headers, body

    def closed(self) -> bool:
        self.sock.settimeout(5)
        return self.sock.recv(1) == b""

    def _more(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError("closed by the node")
        self.buf += data


def connect(node: NodeProcess) -> tuple[socket.socket, Reader]:
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=10)
    return sock, Reader(sock)


def test_pipelined_queries_are_answered_in_order(node: NodeProcess) -> None:
    sock, reader = connect(node)
    with sock:
        sock.sendall(
            post(query("CREATE TABLE t(x)")) + b"".join(post(query(f"SELECT {i}")) for i in range(5))
        )
        assert reader.response()[0] == 200
        for i in range(5):
            status, headers, body = reader.response()
            assert status == 200
            assert headers["content-type"] == "application/json"
            assert "date" in headers
            assert json.loads(body)["rows"] == [[i]]


def test_a_request_split_into_single_bytes(node: NodeProcess) -> None:
    sock, reader = connect(node)
    with sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for b in post(query("SELECT 'slow'")):
            sock.send(bytes([b]))
        status, _, body = reader.response()
        assert (status, json.loads(body)["rows"]) == (200, [["slow"]])


def test_other_requests_hand_the_connection_to_aiohttp(node: NodeProcess) -> None:
    """A fast request, then one the fast path leaves to aiohttp (with a query that follows it pipelined):
    all answered, in order, on the same connection."""
    sock, reader = connect(node)
    with sock:
        sock.sendall(post(query("SELECT 1")))
        assert reader.response()[0] == 200
        sock.sendall(b"GET /status HTTP/1.1\r\nHost: t\r\n\r\n" + post(query("SELECT 2")))
        status, headers, body = reader.response()
        assert status == 200
        assert json.loads(body)["node"] == "node1"
        assert "aiohttp" in headers["server"]
        status, _, body = reader.response()
        assert (status, json.loads(body)["rows"]) == (200, [[2]])


CHUNKED = b"POST /query HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (
    len(query("SELECT 3")),
    query("SELECT 3"),
)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (CHUNKED, 200),
        (post(query("SELECT 3"), path="/query?min_seq=0"), 200),
        (post(query("SELECT 3"), path="/databases/app.db"), 200),
        (post(query("SELECT 3"), path="/databases/nope.db"), 404),
        (post(query("SELECT 3"), path="/nowhere"), 404),
        (post(b"{not json"), 400),
        # aiohttp's own parser refuses these, in plain text
        (b"POST /query HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n{}", 400),
        (b"POST /query HTTP/1.1\r\nBad Header\r\n\r\n", 400),
    ],
)
def test_edge_requests_get_the_answers_aiohttp_gives(
    node: NodeProcess, request_bytes: bytes, status: int
) -> None:
    sock, reader = connect(node)
    with sock:
        sock.sendall(request_bytes)
        got, headers, body = reader.response()
        assert got == status, body
        if status == 200:
            assert json.loads(body)["rows"] == [[3]]
        elif headers["content-type"] == "application/json":
            assert "error" in json.loads(body)
    # and the node goes on serving
    sock, reader = connect(node)
    with sock:
        sock.sendall(post(query("SELECT 4")))
        assert reader.response()[0] == 200


def test_connection_close_and_half_close(node: NodeProcess) -> None:
    sock, reader = connect(node)
    with sock:
        sock.sendall(post(query("SELECT 5"), headers="Connection: close\r\n"))
        status, headers, _ = reader.response()
        assert (status, headers["connection"]) == (200, "close")
        assert reader.closed()
    sock, reader = connect(node)
    with sock:
        sock.sendall(post(query("SELECT 6")))
        sock.shutdown(socket.SHUT_WR)  # the client is done sending, and still reads its answer
        status, _, body = reader.response()
        assert (status, json.loads(body)["rows"]) == (200, [[6]])
        assert reader.closed()


def test_the_token_is_checked_on_the_fast_path(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db"], token="s3cret")
    sock, reader = connect(node)
    with sock:
        sock.sendall(post(query("SELECT 7")))
        status, headers, body = reader.response()
        assert status == 401
        assert headers["www-authenticate"] == 'Bearer realm="sqlite-ha"'
        assert json.loads(body)["error"]["code"] == "unauthorized"
        sock.sendall(post(query("SELECT 7"), headers="Authorization: Bearer s3cret\r\n"))
        status, _, body = reader.response()
        assert (status, json.loads(body)["rows"]) == (200, [[7]])


def test_a_slow_client_does_not_stall_others(node: NodeProcess) -> None:
    slow, _ = connect(node)
    with slow:
        slow.sendall(post(query("SELECT 8"))[:-3])  # the body is never completed
        started = time.monotonic()
        sock, reader = connect(node)
        with sock:
            sock.sendall(post(query("SELECT 9")))
            assert reader.response()[0] == 200
        assert time.monotonic() - started < 5


# ------------------------------------------------------------------------------------------- the parser
@pytest.mark.parametrize(
    "head",
    [
        b"GET /query HTTP/1.1\r\n\r\n",
        b"POST /query HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
        b"POST /query?x=1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"POST /databases/a%2Fb HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        b"POST /query HTTP/1.1\r\n\r\n",  # no Content-Length
        b"POST /query HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
        b"POST /query HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
        b"POST /query HTTP/1.1\r\nContent-Length : 5\r\n\r\n",
        b"POST /query HTTP/1.1\r\nContent-Length: 5\r\n folded\r\n\r\n",
        b"POST /query HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"POST /query HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
        b"POST /query HTTP/1.1\r\nContent-Length: 5\r\nConnection: upgrade\r\n\r\n",
        b"POST /query HTTP/1.1\r\nContent-Length: 5\r\nX-Caf\xc3\xa9: 1\r\n\r\n",
        b"POST /query HTTP/1.1\r\nContent-Length: 17\r\n\r\n",  # more than the body limit
        b"POST /query HTTP/1.1\r\nX: " + b"x" * MAX_HEAD,  # a head without its end
    ],
)
def test_parse_hands_over_what_it_does_not_serve(head: bytes) -> None:
    with pytest.raises(_HandOver):
        parse(bytearray(head), max_body=16)


def test_parse_takes_one_request_at_a_time() -> None:
    buf = bytearray(post(b"{}", headers="Authorization: Bearer x\r\n") + post(b"[1]", path="/databases/d.db"))
    first = parse(buf, max_body=16)
    assert first is not None
    assert (first.database, first.body, first.auth, first.close) == (None, b"{}", "Bearer x", False)
    second = parse(buf, max_body=16)
    assert second is not None
    assert (second.database, second.body) == ("d.db", b"[1]")
    assert buf == b""
    assert parse(bytearray(post(b"{}")[:-1]), max_body=16) is None  # incomplete: wait for more


# ------------------------------------------------------------------------------------------- in process
def test_an_idle_connection_is_closed(monkeypatch: pytest.MonkeyPatch) -> None:
    """As aiohttp's keep-alive timeout does (shortened here); one being answered is left alone."""
    monkeypatch.setattr(fast, "SWEEP", 0.1)

    async def scenario() -> None:
        release = asyncio.Event()

        async def respond(database: str | None, body: bytes, auth: str) -> fast.Answer:
            if body == b"wait":
                await release.wait()
            return 200, b"{}", None

        async def handler(request: web.BaseRequest) -> web.Response:
            return web.Response(text="aiohttp")

        aiohttp_server = web_server.Server(handler)
        server = await asyncio.get_running_loop().create_server(
            fast.FastPath(respond, aiohttp_server, max_body=1024, limits=fast.Limits(keepalive_timeout=0.3)),
            "127.0.0.1",
            0,
        )
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(post(b"{}"))
            assert (await reader.readuntil(b"{}")).startswith(b"HTTP/1.1 200 OK\r\n")
            async with asyncio.timeout(5):
                assert await reader.read() == b""  # closed once idle
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(post(b"wait"))
            await asyncio.sleep(0.8)  # longer than the idle timeout, with a request in flight
            release.set()
            assert (await reader.readuntil(b"{}")).startswith(b"HTTP/1.1 200 OK\r\n")
            writer.close()
        finally:
            server.close()
            await aiohttp_server.shutdown()

    asyncio.run(scenario())
