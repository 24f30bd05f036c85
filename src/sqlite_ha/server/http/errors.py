"""The one mapping from sqlite-ha errors to HTTP statuses, and the middleware that applies it."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from sqlite_ha import errors as e

log = logging.getLogger(__name__)

_STATUS: tuple[tuple[type[e.HAError], int], ...] = (
    (e.Unauthorized, 401),
    (e.PermissionDenied, 403),
    (e.StatementNotAllowed, 400),
    (e.BadRequest, 400),
    (e.SQLError, 400),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.PayloadTooLarge, 413),
    (e.Busy, 503),
    (e.StorageFull, 507),
    (e.NotReady, 503),
)
_EXTRA_STATUS = {
    "query_timeout": 400,
    "request_timeout": 408,
    "result_too_large": 400,
    "not_replicating": 503,
    "replication_error": 503,
    "replication_timeout": 503,
    "snapshot_error": 503,
    "snapshot_unauthenticated": 503,
    "replication_gap": 503,
    "load_interrupted": 503,
    "no_snapshot": 404,
    "snapshots_unavailable": 409,
    "stale_read": 504,
    "log_unreachable": 503,
    "no_writer": 503,
    "not_writer": 503,
    "fenced": 409,
    "write_outcome_unknown": 503,
    "unknown_sender": 403,
    "not_pinned": 409,
}


# Errors after which nothing was written and a retry soon may succeed: their answers say when.
_RETRY_AFTER = frozenset({"no_writer", "not_writer"})


def status_for(err: e.HAError) -> int:
    for cls, status in _STATUS:
        if isinstance(err, cls):
            return status
    return _EXTRA_STATUS.get(err.code, 500)


def error_body(
    status: int, code: str, message: str, *, challenge: str = "Bearer", **extra: Any
) -> tuple[bytes, dict[str, str] | None]:
    body = {"error": {"code": code, "message": message, **{k: v for k, v in extra.items() if v is not None}}}
    headers = {"WWW-Authenticate": f'{challenge} realm="sqlite-ha"'} if status == 401 else None
    return orjson.dumps(body), headers


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body, headers = error_body(status, code, message, **extra)
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def answer_error(err: Exception, method: str, path: str) -> tuple[int, bytes, dict[str, str] | None]:
    """The status, JSON body and headers any route answers an exception with: an ``HAError`` by
    ``status_for``, an unexpected one (logged) as 500, or 507 for a full disk."""
    if isinstance(err, e.HAError):
        status = status_for(err)
        if status >= 500:
            log.warning("%s %s: %s", method, path, err.message)
        extra = {k: v for k, v in err.to_dict().items() if k not in ("code", "message")}
        challenge = err.scheme if isinstance(err, e.Unauthorized) else "Bearer"
        body, headers = error_body(status, err.code, err.message, challenge=challenge, **extra)
        if err.code in _RETRY_AFTER:
            headers = {**(headers or {}), "Retry-After": "1"}
        return status, body, headers
    if isinstance(err, OSError) and err.errno in e.NO_ROOM:  # an upload or a temporary file
        log.warning("%s %s: %s", method, path, err)
        message = f"the node has no room to store this: {err.strerror}"
        return (507, *error_body(507, "disk_full", message, hint="free space on the node's disk"))
    log.error("internal error serving %s %s", method, path, exc_info=err)
    return (500, *error_body(500, "internal_error", "internal server error; see the node's log"))


MAX_BODY_SIZE = web.AppKey("max_body_size", int)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 400: "bad_request"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON ``{"error": {"code", "message", …}}`` with the status of ``status_for``."""
    try:
        return await handler(request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app.get(MAX_BODY_SIZE)
        return error_response(
            413, "payload_too_large", f"the request body is larger than {limit} bytes (--max-body-size)"
        )
    except web.HTTPException as err:
        if err.status < 400:
            raise
        code = _HTTP_CODES.get(err.status, "http_error")
        message = err.reason if err.status != 404 else f"no route {request.method} {request.path}"
        resp = error_response(err.status, code, message)
        if err.status == 405 and "Allow" in err.headers:
            resp.headers["Allow"] = err.headers["Allow"]
        return resp
    except Exception as err:
        status, body, headers = answer_error(err, request.method, request.path)
        return web.Response(status=status, body=body, content_type="application/json", headers=headers)
