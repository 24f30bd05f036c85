"""What both halves of the wire codec share: protocol codes, ``ProtocolError`` and the message-body reader.

Two kinds of errors matter to the session, and ``ProtocolError.fatal`` tells them apart the way PostgreSQL
does: a broken frame (bad length, unknown type byte, oversized message, anything in the startup phase) leaves
no way to find the next message, so the connection must close; a well-framed message with bad content (a
string without its NUL, invalid UTF-8, a bad format code) has already been consumed, so the session reports
an ErrorResponse and, in the extended protocol, skips to the next Sync. ``BodyReader`` raises the second kind,
naming the field that broke, for the server's decoders and for the test client's (``backend_parser``) alike.
"""

from __future__ import annotations

import struct

# SQLSTATE codes the codec raises (PostgreSQL's errcodes.txt)
PROTOCOL_VIOLATION = "08P01"
PROGRAM_LIMIT_EXCEEDED = "54000"
CHARACTER_NOT_IN_REPERTOIRE = "22021"
FEATURE_NOT_SUPPORTED = "0A000"

PROTOCOL_3_0 = 196608  # major 3 << 16 | minor 0
SSL_REQUEST_CODE = 80877103  # 1234 << 16 | 5679
GSSENC_REQUEST_CODE = 80877104  # 1234 << 16 | 5680
CANCEL_REQUEST_CODE = 80877102  # 1234 << 16 | 5678


class ProtocolError(Exception):
    """The peer broke the protocol; ``code`` is the SQLSTATE to report, ``fatal`` says the frame is lost."""

    def __init__(self, message: str, code: str = PROTOCOL_VIOLATION, *, fatal: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.fatal = fatal


_I32 = struct.Struct("!i")


class BodyReader:
    """Cursor over one message body; every error names the message and the field that broke."""

    __slots__ = ("data", "pos", "what")

    def __init__(self, data: bytes, what: str) -> None:
        self.data = data
        self.pos = 0
        self.what = what

    def fail(self, problem: str, code: str = PROTOCOL_VIOLATION) -> ProtocolError:
        return ProtocolError(f"{self.what} message: {problem}", code, fatal=False)

    def need(self, n: int, field: str) -> None:
        left = len(self.data) - self.pos
        if n > left:
            raise self.fail(f"ends inside {field} ({n} bytes needed, {left} left)")

    def cstring(self, field: str) -> str:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise self.fail(f"{field} is not NUL-terminated")
        raw = self.data[self.pos : end]
        self.pos = end + 1
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.fail(
                f"{field} is not valid UTF-8 ({exc.reason} at byte {exc.start})", CHARACTER_NOT_IN_REPERTOIRE
            ) from exc

    def byte(self, field: str) -> str:
        self.need(1, field)
        self.pos += 1
        return chr(self.data[self.pos - 1])

    def number(self, s: struct.Struct, field: str) -> int:
        self.need(s.size, field)
        (value,) = s.unpack_from(self.data, self.pos)
        self.pos += s.size
        return int(value)

    def formats(self, count: int, field: str) -> tuple[int, ...]:
        self.need(2 * count, f"{count} {field}")
        codes: tuple[int, ...] = struct.unpack_from(f"!{count}h", self.data, self.pos)
        self.pos += 2 * count
        for i, code in enumerate(codes):
            if code not in (0, 1):
                raise self.fail(f"{field[:-1]} {code} at position {i} is neither 0 (text) nor 1 (binary)")
        return codes

    def values(self, count: int, noun: str) -> tuple[bytes | None, ...]:
        """Length-prefixed values, -1 meaning NULL, as in Bind and FunctionCall."""
        data, pos, size = self.data, self.pos, len(self.data)
        out: list[bytes | None] = []
        for i in range(count):
            if pos + 4 > size:
                raise self.fail(f"{count} {noun} values announced, but the message ends after {i}")
            (n,) = _I32.unpack_from(data, pos)
            pos += 4
            if n == -1:
                out.append(None)
                continue
            if n < -1:
                raise self.fail(f"{noun} value {i} has negative length {n} (only -1, for NULL, is allowed)")
            if pos + n > size:
                raise self.fail(
                    f"{noun} value {i} announces {n} bytes, but only {size - pos} are left in the message"
                )
            out.append(data[pos : pos + n])
            pos += n
        self.pos = pos
        return tuple(out)

    def end(self) -> None:
        extra = len(self.data) - self.pos
        if extra:
            raise self.fail(f"{extra} bytes of trailing garbage after the last field")
