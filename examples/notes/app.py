"""Notes: a small web app whose SQLite database is replicated by sqlite-ha's embedded driver.

It is written as a plain ``sqlite3`` app would be; the one line that differs opens the database with
``sqlite_ha.connect`` and a DSN instead of ``sqlite3.connect`` and a file name. Run two instances with the
same database name and they are one cluster: a note written on one appears on the other (README.md).

Standard library only, besides sqlite-ha: ``http.server`` serves a one-page UI at ``/`` and a JSON API:

    GET    /api/notes          every note, newest first: {"instance": ..., "notes": [{"id", "text", ...}]}
    POST   /api/notes          {"text": "..."} adds a note; 201 and the note
    DELETE /api/notes/<id>     removes a note; 204
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import sqlite_ha

PAGE = (Path(__file__).parent / "index.html").read_bytes()
MAX_TEXT = 10_000


class Notes:
    """The app's data, in SQL as with ``sqlite3``. One connection, shared by the server's threads under a
    lock, is how ``sqlite3`` apps share one; the connection also keeps this instance in its cluster."""

    def __init__(self, dsn: str, instance: str) -> None:
        self.instance = instance
        self.db = sqlite_ha.connect(dsn)  # with sqlite3: sqlite3.connect("notes.db")
        self.lock = threading.Lock()
        with self.lock, self.db:
            self.db.execute(
                "CREATE TABLE IF NOT EXISTS notes ("
                " id INTEGER PRIMARY KEY,"  # sqlite-ha keeps keys chosen on different instances apart
                " text TEXT NOT NULL,"
                " instance TEXT NOT NULL,"
                " created TEXT NOT NULL)"
            )

    def all(self) -> list[dict[str, Any]]:
        with self.lock:
            cursor = self.db.execute("SELECT id, text, instance, created FROM notes ORDER BY created DESC")
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def add(self, text: str) -> dict[str, Any]:
        created = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")
        with self.lock, self.db:  # commits on success, rolls back on an error
            cursor = self.db.execute(
                "INSERT INTO notes (text, instance, created) VALUES (?, ?, ?)", (text, self.instance, created)
            )
            note_id = cursor.lastrowid
        return {"id": note_id, "text": text, "instance": self.instance, "created": created}

    def delete(self, note_id: int) -> bool:
        with self.lock, self.db:
            return self.db.execute("DELETE FROM notes WHERE id = ?", (note_id,)).rowcount > 0

    def close(self) -> None:
        with self.lock:
            self.db.close()


class Handler(BaseHTTPRequestHandler):
    notes: Notes  # set on the subclass made in main()

    def do_GET(self) -> None:
        if self.path == "/":
            self._send(HTTPStatus.OK, PAGE, "text/html; charset=utf-8")
        elif self.path == "/api/notes":
            self._json(HTTPStatus.OK, {"instance": self.notes.instance, "notes": self.notes.all()})
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})

    def do_POST(self) -> None:
        if self.path != "/api/notes":
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such page: {self.path}"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length)) if 0 < length <= 4 * MAX_TEXT else None
            text = body.get("text") if isinstance(body, dict) else None
        except (ValueError, UnicodeDecodeError):
            text = None
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
            error = f'send {{"text": "..."}}, 1 to {MAX_TEXT} characters'
            self._json(HTTPStatus.BAD_REQUEST, {"error": error})
            return
        self._json(HTTPStatus.CREATED, self.notes.add(text.strip()))

    def do_DELETE(self) -> None:
        prefix = "/api/notes/"
        if not self.path.startswith(prefix) or not self.path[len(prefix) :].isdigit():
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such note: {self.path}"})
        elif self.notes.delete(int(self.path[len(prefix) :])):
            self._send(HTTPStatus.NO_CONTENT, b"", "application/json")
        else:
            self._json(HTTPStatus.NOT_FOUND, {"error": f"no such note: {self.path}"})

    def _json(self, status: HTTPStatus, value: Any) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: a request log is not what this example is about


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dsn", help='the database: a path, or "file:path?option=value&..." (driver options)')
    parser.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP address (default 127.0.0.1)")
    args = parser.parse_args(argv)

    notes = Notes(args.dsn, instance=f"{args.host}:{args.port}")
    server = ThreadingHTTPServer((args.host, args.port), type("NotesHandler", (Handler,), {"notes": notes}))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # stop as on Ctrl-C: close the database cleanly
    print(f"notes: serving on http://{args.host}:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        notes.close()


if __name__ == "__main__":
    main()
