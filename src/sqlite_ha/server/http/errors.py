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
    "result_too_large": 400,
    "not_replicating": 503,
    "replication_error": 503,
    "replication_timeout": 503,
    "snapshot_error": 503,
    "replication_gap": 503,
    "load_interrupted": 503,
    "no_snapshot": 404,
    "snapshots_unavailable": 409,
    "stale_read": 504,
}


def status_for(err: e.HAError) -> int:
    for cls, status in _STATUS:
        if isinstance(err, cls):
            return status
    return _EXTRA_STATUS.get(err.code, 500)


def error_response(status: int, code: str, message: str, **extra: Any) -> web.Response:
    body = {"error": {"code": code, "message": message, **{k: v for k, v in extra.items() if v is not None}}}
    headers = {"WWW-Authenticate": 'Bearer realm="sqlite-ha"'} if status == 401 else None
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


MAX_BODY_SIZE = web.AppKey("max_body_size", int)

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 400: "bad_request"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error leaves as JSON ``{"error": {"code", "message", …}}`` with the status of ``status_for``."""
    try:
        return await handler(request)
    except e.HAError as err:
        status = status_for(err)
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.path, err.message)
        return error_response(
            status,
            err.code,
            err.message,
            **{k: v for k, v in err.to_dict().items() if k not in ("code", "message")},
        )
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
        if isinstance(err, OSError) and err.errno in e.NO_ROOM:  # an upload or a temporary file
            log.warning("%s %s: %s", request.method, request.path, err)
            return error_response(
                507,
                "disk_full",
                f"the node has no room to store this: {err.strerror}",
                hint="free space on the node's disk",
            )
        log.exception("internal error serving %s %s", request.method, request.path)
        return error_response(500, "internal_error", "internal server error; see the node's log")
