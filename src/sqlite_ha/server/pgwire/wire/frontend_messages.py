"""The messages a PostgreSQL client sends (protocol 3.0), as the frontend parser returns them.

Apart from the parser because the test client (``backend_parser``) builds and encodes the same classes and
needs none of the parser. Every class has one shape, given once by ``_message_class``: frozen (the parser
hands out one shared instance for every Sync, Flush, Terminate and CopyDone), slotted (one is built per
message on the hot path) and keyword-only (Bind's three tuples are easy to swap when passed by position).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, kw_only_default=True)
def _message_class(cls: type[_T]) -> type[_T]:
    return dataclass(frozen=True, slots=True, kw_only=True)(cls)


@_message_class
class StartupMessage:
    """``protocol`` is the full code (3.0 = 196608); a newer 3.x minor asks for NegotiateProtocolVersion."""

    protocol: int
    params: dict[str, str]


@_message_class
class SSLRequest:
    """Answered with the single byte ``ssl_refused()``/``ssl_accepted()``; a new startup packet follows."""


@_message_class
class GSSENCRequest:
    """Answered like SSLRequest; we refuse it and the client continues in the clear or gives up."""


@_message_class
class CancelRequest:
    pid: int
    secret: int


@_message_class
class Query:
    sql: str


@_message_class
class Parse:
    name: str
    sql: str
    param_oids: tuple[int, ...]


@_message_class
class Bind:
    """``param_formats`` holds 0, 1 or len(params) codes, exactly as sent; the session expands them."""

    portal: str
    statement: str
    param_formats: tuple[int, ...]
    params: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]


@_message_class
class Describe:
    kind: str  # 'S' statement or 'P' portal
    name: str


@_message_class
class Execute:
    portal: str
    max_rows: int  # 0 (or negative, as PostgreSQL reads it) means no limit


@_message_class
class Sync:
    pass


@_message_class
class Flush:
    pass


@_message_class
class Close:
    kind: str  # 'S' statement or 'P' portal
    name: str


@_message_class
class Terminate:
    pass


@_message_class
class PasswordMessage:
    """Raw body of 'p': a password, a SASLInitialResponse or a SASLResponse; only the session knows which."""

    data: bytes


@_message_class
class CopyData:
    data: bytes


@_message_class
class CopyDone:
    pass


@_message_class
class CopyFail:
    message: str


@_message_class
class FunctionCall:
    """Parsed in full so the session can refuse it with feature_not_supported and keep the connection."""

    function_oid: int
    arg_formats: tuple[int, ...]
    args: tuple[bytes | None, ...]
    result_format: int


FrontendMessage = (
    StartupMessage
    | SSLRequest
    | GSSENCRequest
    | CancelRequest
    | Query
    | Parse
    | Bind
    | Describe
    | Execute
    | Sync
    | Flush
    | Close
    | Terminate
    | PasswordMessage
    | CopyData
    | CopyDone
    | CopyFail
    | FunctionCall
)
