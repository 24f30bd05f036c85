"""Request bodies on the routes aiohttp serves: refused at once when declared too large, read within a time.

aiohttp enforces ``client_max_size`` only when a handler reads the body, after the authentication check, and
has no time limit for reading it. This middleware runs before both: a declared ``Content-Length`` beyond
``--max-body-size`` is answered 413 before a byte of the body is read, whether or not the token is valid (so
a client learns at once, and nobody can make the node wait for a body it will refuse); and a body must arrive
within ``--body-timeout``, or the request is answered 408 and the connection closed. Uploads (``/load``)
have their own size limit (``--max-load-size``, checked by their handler) and stream on: for them the time
limit is between two pieces of the body, not the whole of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from aiohttp import web

from sqlite_ha.errors import HAError
from sqlite_ha.server.http.errors import error_response


class RequestTimeout(HAError):
    code = "request_timeout"


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _is_upload(request: web.Request) -> bool:
    return request.method == "POST" and (request.path == "/load" or request.path.endswith("/load"))


def body_middleware(
    max_body: int, timeout: float, small: Mapping[str, int] | None = None
) -> Callable[..., Awaitable[web.StreamResponse]]:
    """``small`` maps the paths whose bodies are a few bytes (node requests such as heartbeats) to their
    limit: a longer body there, or one without ``Content-Length``, is refused before it is read."""

    @web.middleware
    async def limit_body(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists:
            return await handler(request)
        upload = _is_upload(request)
        length = request.content_length
        tight = small.get(request.path) if small else None
        if tight is not None and (length is None or length > tight):
            size = "a body without Content-Length" if length is None else f"{length} bytes"
            message = (
                f"a request to {request.path} is at most {tight} bytes with a Content-Length, not {size}"
            )
            resp = error_response(413, "payload_too_large", message)
            resp.force_close()
            return resp
        if not upload and length is not None and length > max_body:
            resp = error_response(
                413,
                "payload_too_large",
                f"the request body ({length} bytes) is larger than {max_body} bytes (--max-body-size)",
            )
            resp.force_close()  # the body is not read: the connection cannot carry another request
            return resp
        if upload:  # read by its handler, piece by piece, each within the timeout (``read_piece``)
            return await handler(request)
        try:
            async with asyncio.timeout(timeout):
                await request.read()  # kept by the request: the handler's read() returns it
        except TimeoutError:
            message = f"the request's body did not arrive within {timeout:g}s (--body-timeout)"
            resp = error_response(408, "request_timeout", message)
            resp.force_close()
            return resp
        return await handler(request)

    return limit_body


async def read_piece(request: web.Request, size: int, timeout: float) -> bytes:
    """The next piece of an upload's body (b"" at its end); a client silent for ``timeout`` gets 408."""
    try:
        async with asyncio.timeout(timeout):
            return await request.content.read(size)
    except TimeoutError:
        message = f"the upload stalled: nothing arrived for {timeout:g}s (--body-timeout)"
        raise RequestTimeout(message) from None
