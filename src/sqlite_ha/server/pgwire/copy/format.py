"""COPY's data formats, sans-IO: the text, CSV and binary rows a client streams in, and the rows sent out.

PostgreSQL defines three formats (``COPY … WITH (FORMAT …)``), and clients produce them byte for byte:
psql's ``\\copy`` sends a file as it is, psycopg writes text format, asyncpg's ``copy_records_to_table``
writes binary. Parsing follows PostgreSQL's ``copyfromparse.c`` rather than Python's ``csv`` module, because
the differences are what clients rely on: in CSV an unquoted empty field is NULL but a quoted one is an empty
string; in text format ``\\N`` is NULL, backslash escapes (``\\t``, ``\\x41``, ``\\101``) are decoded only
after the NULL check, and a backslash before a newline or a delimiter makes it data.

The parsers take the bytes of CopyData messages in whatever pieces they come (a message may end inside a row,
or a quoted CSV field may span lines) and return whole rows, each with its line number for error messages
(PostgreSQL's ``CONTEXT: COPY t, line 3``). Values stay bytes: the caller converts them by column type.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

BINARY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_I16 = struct.Struct("!h")
_I32 = struct.Struct("!i")
_BINARY_HEADER = BINARY_SIGNATURE + _I32.pack(0) + _I32.pack(0)  # no flags, no header extension
_BINARY_TRAILER = _I16.pack(-1)

BAD_COPY_FILE_FORMAT = "22P04"


class CopyError(Exception):
    """A COPY that cannot go on; ``code`` is the SQLSTATE, ``context`` PostgreSQL's ``COPY t, line 3``."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        context: str | None = None,
        hint: str | None = None,
        fatal: bool = False,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.context = context
        self.hint = hint
        self.fatal = fatal


@dataclass(frozen=True, slots=True, kw_only=True)
class CopyOptions:
    """The format options of one COPY, validated and with PostgreSQL's defaults filled in."""

    format: str = "text"  # "text", "csv" or "binary"
    delimiter: bytes = b"\t"
    null: bytes = b"\\N"
    header: bool = False
    header_match: bool = False  # HEADER MATCH: the header line must name the columns
    quote: bytes = b'"'
    escape: bytes = b'"'
    force_quote_all: bool = False
    force_quote: tuple[str, ...] = ()
    force_not_null: tuple[str, ...] = ()
    force_null: tuple[str, ...] = ()

    @property
    def binary(self) -> bool:
        return self.format == "binary"


class CopyRow(NamedTuple):
    line: int  # PostgreSQL counts input lines from 1, the header included; a CSV record counts as one
    values: list[bytes | None]


class RowParser(Protocol):
    """Rows out of COPY data: ``feed`` each CopyData's bytes, ``finish`` at CopyDone."""

    def feed(self, data: bytes) -> list[CopyRow]: ...

    def finish(self) -> list[CopyRow]: ...


def row_parser(options: CopyOptions, columns: Sequence[str]) -> RowParser:
    """The parser of ``options.format`` for rows of ``columns`` (their names, for errors and HEADER MATCH)."""
    if options.format == "binary":
        return BinaryParser(len(columns))
    if options.format == "csv":
        return CsvParser(options, columns)
    return TextParser(options, columns)


# ---------------------------------------------------------------------------------------- text and CSV in
class _LineParser:
    """What text and CSV share: the buffer, line numbers, the header line and the ``\\.`` end marker."""

    def __init__(self, options: CopyOptions, columns: Sequence[str]) -> None:
        self.options = options
        self.columns = list(columns)
        self._buf = bytearray()
        self._line = 0
        self._header = options.header
        self._ended = False  # after the end marker, the rest is ignored (as PostgreSQL does)
        # how far the incomplete line at the start of the buffer was searched for its end: a long line sent
        # in many CopyData messages is scanned once, not once per message
        self._searched = 0

    def feed(self, data: bytes) -> list[CopyRow]:
        if self._ended:
            return []
        self._buf += data
        return self._rows(final=False)

    def finish(self) -> list[CopyRow]:
        if self._ended:
            return []
        return self._rows(final=True)

    def _rows(self, *, final: bool) -> list[CopyRow]:
        buf, pos, out = self._buf, 0, []
        while pos < len(buf):
            found = self._record(buf, pos, final)
            if found is None:
                self._searched = len(buf) - pos
                break
            self._searched = 0
            fields, pos = found
            self._line += 1
            if fields is None:  # the end marker
                self._ended = True
                pos = len(buf)
                break
            if self._header:
                self._header = False
                self._check_header(fields)
                continue
            out.append(CopyRow(self._line, self._values(fields)))
        del buf[:pos]
        return out

    def _record(
        self, buf: bytearray, pos: int, final: bool
    ) -> tuple[list[tuple[bytes, bool]] | None, int] | None:
        """The next record's raw fields (value, was quoted) and where the next starts; None: need more bytes;
        fields None: the end marker."""
        raise NotImplementedError

    def _values(self, fields: list[tuple[bytes, bool]]) -> list[bytes | None]:
        raise NotImplementedError

    def _check_header(self, fields: list[tuple[bytes, bool]]) -> None:
        if not self.options.header_match:
            return
        names = [value.decode("utf-8", "replace") for value, _ in fields]
        if len(names) != len(self.columns):
            raise self.error(
                f"wrong number of fields in header line: got {len(names)}, expected {len(self.columns)}"
            )
        for i, (got, want) in enumerate(zip(names, self.columns, strict=True)):
            if got != want:
                raise self.error(
                    f'column name mismatch in header line field {i + 1}: got "{got}", expected "{want}"'
                )

    def _count(self, n: int) -> None:
        if n > len(self.columns):
            raise self.error("extra data after last expected column")
        if n < len(self.columns):
            raise self.error(f'missing data for column "{self.columns[n]}"')

    def error(self, message: str) -> CopyError:
        return CopyError(BAD_COPY_FILE_FORMAT, message, context=f"line {self._line}")


def _line_end(buf: bytearray, pos: int, final: bool, searched: int = 0) -> tuple[int, int] | None:
    """(end of the line's content, start of the next) for the line at ``pos``, whose first ``searched``
    bytes hold no newline; None when it is incomplete."""
    nl = buf.find(b"\n", pos + searched)
    if nl < 0:
        return (len(buf), len(buf)) if final else None
    return (nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl), nl + 1


_SIMPLE_ESCAPES = {
    ord("b"): b"\b",
    ord("f"): b"\f",
    ord("n"): b"\n",
    ord("r"): b"\r",
    ord("t"): b"\t",
    ord("v"): b"\v",
}
_ESCAPE = re.compile(rb"\\(?:([0-7]{1,3})|x([0-9A-Fa-f]{1,2})|(.)|$)", re.S)


def _unescape_match(m: re.Match[bytes]) -> bytes:
    octal, hexa, char = m.group(1), m.group(2), m.group(3)
    if octal is not None:
        return bytes([int(octal, 8) & 0xFF])
    if hexa is not None:
        return bytes([int(hexa, 16)])
    if char is None:
        return b"\\"  # a lone backslash ending the data: kept
    return _SIMPLE_ESCAPES.get(char[0], char)


def unescape_text(raw: bytes) -> bytes:
    """A text-format field with its backslash escapes decoded."""
    return _ESCAPE.sub(_unescape_match, raw) if b"\\" in raw else raw


class TextParser(_LineParser):
    """PostgreSQL's text format: one line per row, fields split on the delimiter, backslash escapes."""

    def __init__(self, options: CopyOptions, columns: Sequence[str]) -> None:
        super().__init__(options, columns)
        d = options.delimiter
        self._field = re.compile(rb"(?:[^\\" + re.escape(d) + rb"]|\\.)*", re.S)

    def _record(
        self, buf: bytearray, pos: int, final: bool
    ) -> tuple[list[tuple[bytes, bool]] | None, int] | None:
        search = pos + self._searched
        while True:  # a newline after an odd number of backslashes is data, not the end of the line
            nl = buf.find(b"\n", search)
            if nl < 0:
                if not final:
                    return None
                end = nxt = len(buf)
                break
            k = nl - 1
            while k >= pos and buf[k] == 0x5C:
                k -= 1
            if (nl - 1 - k) % 2 == 0:
                end, nxt = (nl - 1 if nl > pos and buf[nl - 1] == 0x0D else nl), nl + 1
                break
            search = nl + 1
        line = bytes(buf[pos:end])
        if line == b"\\.":
            return None, nxt
        return [(f, False) for f in self._split(line)], nxt

    def _split(self, line: bytes) -> list[bytes]:
        d = self.options.delimiter
        if b"\\" not in line:
            return line.split(d)
        out: list[bytes] = []
        pos, n = 0, len(line)
        while True:
            m = self._field.match(line, pos)
            assert m is not None  # the pattern matches the empty string
            end = m.end()
            if end < n and line[end : end + 1] != d:
                end = n  # a lone backslash at the very end of the data
            out.append(line[pos:end])
            if end >= n:
                return out
            pos = end + 1

    def _values(self, fields: list[tuple[bytes, bool]]) -> list[bytes | None]:
        self._count(len(fields))
        null = self.options.null
        return [None if raw == null else unescape_text(raw) for raw, _ in fields]


class CsvParser(_LineParser):
    """PostgreSQL's CSV: quoted fields may hold delimiters, quotes (doubled or escaped) and newlines; an
    unquoted field equal to the NULL string is NULL, a quoted one never is (unless FORCE_NULL)."""

    def __init__(self, options: CopyOptions, columns: Sequence[str]) -> None:
        super().__init__(options, columns)
        d, q, e = options.delimiter, options.quote, options.escape
        self._special = re.compile(b"[" + re.escape(d + q) + b"\n]")
        self._quoted = re.compile(b"[" + re.escape(q + e) + b"]")
        lowered = [c.lower() for c in self.columns]
        self._not_null = [c in {n.lower() for n in options.force_not_null} for c in lowered]
        self._force_null = [c in {n.lower() for n in options.force_null} for c in lowered]

    def _record(
        self, buf: bytearray, pos: int, final: bool
    ) -> tuple[list[tuple[bytes, bool]] | None, int] | None:
        found = _line_end(buf, pos, final, self._searched)
        if found is None:
            return None
        end, nxt = found
        q = self.options.quote
        if buf.find(q, pos, end) < 0:  # the common case: no quotes, the record is the line
            line = bytes(buf[pos:end])
            if line == b"\\.":
                return None, nxt
            return [(f, False) for f in line.split(self.options.delimiter)], nxt
        return self._scan(buf, pos, final)

    def _scan(self, buf: bytearray, pos: int, final: bool) -> tuple[list[tuple[bytes, bool]], int] | None:
        """A record with quotes, which may span lines."""
        d, q, e = self.options.delimiter[0], self.options.quote[0], self.options.escape[0]
        fields: list[tuple[bytes, bool]] = []
        value, quoted, i, n = bytearray(), False, pos, len(buf)
        while True:
            segment = i
            m = self._special.search(buf, i)
            stop = m.start() if m is not None else n
            value += buf[i:stop]
            if stop == n:
                if not final:
                    return None
                fields.append((bytes(value), quoted))
                return fields, n
            c = buf[stop]
            i = stop + 1
            if c == d:
                fields.append((bytes(value), quoted))
                value, quoted = bytearray(), False
            elif c == 0x0A:
                if stop > segment and buf[stop - 1] == 0x0D:  # CRLF, the CR outside quotes
                    del value[-1]
                fields.append((bytes(value), quoted))
                return fields, i
            else:  # an opening quote: read to the closing one
                quoted = True
                while True:
                    m = self._quoted.search(buf, i)
                    if m is None:
                        if final:
                            raise self.error("unterminated CSV quoted field")
                        return None
                    stop = m.start()
                    value += buf[i:stop]
                    c = buf[stop]
                    if c == e:
                        if stop + 1 == n and not final:
                            return None  # an escape or a closing quote: the next byte tells
                        if stop + 1 < n and buf[stop + 1] in (q, e):
                            value.append(buf[stop + 1])
                            i = stop + 2
                            continue
                    i = stop + 1
                    if c == q:
                        break
                    value.append(c)  # an escape character before anything else is itself

    def _values(self, fields: list[tuple[bytes, bool]]) -> list[bytes | None]:
        self._count(len(fields))
        null = self.options.null
        out: list[bytes | None] = []
        for i, (value, quoted) in enumerate(fields):
            if value == null and not self._not_null[i] and (not quoted or self._force_null[i]):
                out.append(None)
            else:
                out.append(value)
        return out


# ---------------------------------------------------------------------------------------- binary in
class BinaryParser:
    """PostgreSQL's binary COPY: a signature, then per row a field count and length-prefixed values in each
    type's binary (send) format; -1 as the count ends the data."""

    def __init__(self, width: int) -> None:
        self.width = width
        self._buf = bytearray()
        self._header = True
        self._ended = False
        self._row = 0

    def feed(self, data: bytes) -> list[CopyRow]:
        if self._ended:
            return []
        self._buf += data
        return self._rows()

    def finish(self) -> list[CopyRow]:
        rows = [] if self._ended else self._rows()
        if self._header:
            raise self.error("COPY file signature not recognized")
        if not self._ended and self._buf:
            raise self.error("unexpected EOF in COPY data")
        return rows

    def _rows(self) -> list[CopyRow]:
        buf, pos = self._buf, 0
        out: list[CopyRow] = []
        if self._header:
            if len(buf) < 19:
                return out
            if not buf.startswith(BINARY_SIGNATURE):
                raise self.error("COPY file signature not recognized")
            (flags,) = _I32.unpack_from(buf, 11)
            if flags & (1 << 16):
                raise CopyError("0A000", "binary COPY with OIDs is not supported")
            if flags & 0xFFFE0000:
                raise self.error("unrecognized critical flags in COPY file header")
            (extension,) = _I32.unpack_from(buf, 15)
            if extension < 0:
                raise self.error("invalid COPY file header (wrong length)")
            if len(buf) < 19 + extension:
                return out
            pos = 19 + extension
            self._header = False
        while True:
            found = self._tuple(buf, pos)
            if found is None:
                break
            values, pos = found
            if values is None:
                self._ended = True
                pos = len(buf)
                break
            self._row += 1
            out.append(CopyRow(self._row, values))
        del buf[:pos]
        return out

    def _tuple(self, buf: bytearray, pos: int) -> tuple[list[bytes | None] | None, int] | None:
        n = len(buf)
        if pos + 2 > n:
            return None
        (count,) = _I16.unpack_from(buf, pos)
        pos += 2
        if count == -1:
            return None, pos
        if count != self.width:
            self._row += 1
            raise self.error(f"row field count is {count}, expected {self.width}")
        values: list[bytes | None] = []
        for _ in range(count):
            if pos + 4 > n:
                return None
            (size,) = _I32.unpack_from(buf, pos)
            pos += 4
            if size == -1:
                values.append(None)
                continue
            if size < 0:
                self._row += 1
                raise self.error(f"invalid field size {size}")
            if pos + size > n:
                return None
            values.append(bytes(buf[pos : pos + size]))
            pos += size
        return values, pos

    def error(self, message: str) -> CopyError:
        return CopyError(BAD_COPY_FILE_FORMAT, message, context=f"line {self._row}" if self._row else None)


# ---------------------------------------------------------------------------------------- out
_TEXT_ESCAPES = {
    0x5C: b"\\\\",
    0x08: b"\\b",
    0x0C: b"\\f",
    0x0A: b"\\n",
    0x0D: b"\\r",
    0x09: b"\\t",
    0x0B: b"\\v",
}


class RowEncoder:
    """Rows for COPY TO: values (already each type's text, or binary, representation) into COPY's format."""

    def __init__(self, options: CopyOptions, columns: Sequence[str]) -> None:
        self.options = options
        self.columns = list(columns)
        d = options.delimiter
        self._text_special = re.compile(b"[\\\\\b\f\n\r\t\v" + re.escape(d) + b"]")
        self._csv_special = re.compile(b"[" + re.escape(d + options.quote + options.escape) + b"\r\n]")
        self._csv_escaped = re.compile(b"[" + re.escape(options.quote + options.escape) + b"]")
        force = {c.lower() for c in options.force_quote}
        self._force = [options.force_quote_all or c.lower() in force for c in self.columns]

    def header(self) -> bytes | None:
        """What comes before the rows: the header line, or binary COPY's file header."""
        if self.options.binary:
            return _BINARY_HEADER
        if not self.options.header:
            return None
        names = [c.encode() for c in self.columns]
        if self.options.format == "csv":
            return self._csv_line(names, [False] * len(names))
        return self.options.delimiter.join(self._escape(n) for n in names) + b"\n"

    def row(self, values: Sequence[bytes | None]) -> bytes:
        if self.options.binary:
            parts = [_I16.pack(len(values))]
            for v in values:
                parts.append(_I32.pack(-1) if v is None else _I32.pack(len(v)) + v)
            return b"".join(parts)
        if self.options.format == "csv":
            return self._csv_line(values, self._force)
        null = self.options.null
        return self.options.delimiter.join(null if v is None else self._escape(v) for v in values) + b"\n"

    def trailer(self) -> bytes | None:
        return _BINARY_TRAILER if self.options.binary else None

    def _escape(self, value: bytes) -> bytes:
        if self._text_special.search(value) is None:
            return value
        d = self.options.delimiter[0]
        return b"".join(_TEXT_ESCAPES.get(c) or (b"\\" + bytes([c]) if c == d else bytes([c])) for c in value)

    def _csv_line(self, values: Sequence[bytes | None], force: Sequence[bool]) -> bytes:
        o = self.options
        out = []
        single = len(values) == 1
        for v, forced in zip(values, force, strict=True):
            if v is None:
                out.append(o.null)
                continue
            if forced or v == o.null or (single and v == b"\\.") or self._csv_special.search(v) is not None:
                if o.escape == o.quote:
                    inner = v.replace(o.quote, o.quote + o.quote)
                else:
                    inner = self._csv_escaped.sub(lambda m: o.escape + m.group(), v)
                out.append(o.quote + inner + o.quote)
            else:
                out.append(v)
        return o.delimiter.join(out) + b"\n"
