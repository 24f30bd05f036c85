"""The OpenAPI spec against real nodes: a valid document, true to every answer a node gives, and /docs.

Every response a test provokes goes through ``Conformance.check``: its status must be declared for that route
and method, its content type must be one the spec lists, and a JSON body must validate against the declared
schema (OpenAPI 3.0 schemas converted to JSON Schema 2020-12, ``nullable`` and ``$ref`` included).
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import jsonschema
import openapi_spec_validator
import pytest
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from sqlite_ha.server.http.app import PUBLIC_PATHS, HTTPApi, openapi_text
from sqlite_ha.server.http.docs import render_docs
from sqlite_ha.testing import NodeProcess, Response, free_port, wait_for

NodeFactory = Callable[..., NodeProcess]

SPEC_URI = "urn:sqlite-ha:openapi"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
TOKEN = "secret"

# ------------------------------------------------------------------------------------------------ the spec


def load_spec(text: str | None = None) -> dict[str, Any]:
    spec = yaml.safe_load(openapi_text() if text is None else text)
    assert isinstance(spec, dict)
    return spec


_OAS_ONLY = frozenset({"nullable", "example", "discriminator", "xml", "externalDocs", "deprecated"})


def to_json_schema(schema: Any) -> Any:
    """One OpenAPI 3.0 schema object as JSON Schema 2020-12.

    ``nullable: true`` adds ``null`` to the schema's ``type`` (and, as OpenAPI 3.0.3 says, does nothing
    without one; an ``enum`` must list ``null`` itself). Local ``$ref`` become absolute references into the
    registry.
    """
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _OAS_ONLY:
            continue
        if key == "$ref":
            assert isinstance(value, str), value
            assert value.startswith("#/"), value
            out[key] = SPEC_URI + value
        elif key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "not", "additionalProperties"):
            out[key] = to_json_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        else:
            out[key] = value
    if schema.get("nullable") and isinstance(schema.get("type"), str):
        out["type"] = [schema["type"], "null"]
    return out


def _is_base64(value: object) -> bool:
    if not isinstance(value, str):
        return True
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def _is_int64(value: object) -> bool:
    return not isinstance(value, int) or INT64_MIN <= value <= INT64_MAX


FORMATS = jsonschema.FormatChecker()
FORMATS.checks("byte")(_is_base64)
FORMATS.checks("int64")(_is_int64)


class Conformance:
    """Checks responses against the spec and remembers which (method, route, status) were seen."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        schemas = spec.get("components", {}).get("schemas", {})
        converted = {"components": {"schemas": {name: to_json_schema(s) for name, s in schemas.items()}}}
        self.registry: Registry[Any] = Registry().with_resource(
            SPEC_URI, DRAFT202012.create_resource(converted)
        )
        self.seen: set[tuple[str, str, int]] = set()

    def resolve(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            target: Any = self.spec
            for part in node["$ref"][2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def validator(self, schema: Any) -> jsonschema.protocols.Validator:
        return cast(
            jsonschema.protocols.Validator,
            jsonschema.Draft202012Validator(
                to_json_schema(schema), registry=self.registry, format_checker=FORMATS
            ),
        )

    def validate(self, schema: Any, instance: Any, where: str) -> None:
        errors = sorted(self.validator(schema).iter_errors(instance), key=lambda e: list(e.absolute_path))
        if errors:
            # best_match descends into oneOf/anyOf, so the line names the value that fits no branch.
            best = [jsonschema.exceptions.best_match([e]) for e in errors[:5]]
            detail = "\n".join(f"  at {list(e.absolute_path)}: {e.message[:300]}" for e in best if e)
            raise AssertionError(
                f"{where} does not match its schema:\n{detail}\ninstance: {json.dumps(instance)[:1500]}"
            )

    def operation(self, method: str, route: str) -> dict[str, Any]:
        op = self.spec["paths"].get(route, {}).get(method.lower())
        assert isinstance(op, dict), f"{method} {route} is not in the spec"
        return op

    def check(self, method: str, route: str, resp: Response) -> None:
        where = f"{method} {route} -> {resp.status}"
        responses = self.operation(method, route)["responses"]
        declared = responses.get(str(resp.status))
        assert declared is not None, (
            f"{method} {route} answered {resp.status}, which the spec does not declare for it "
            f"(declared: {sorted(responses)}); body: {resp.body[:500]!r}"
        )
        declared = self.resolve(declared)
        headers = {k.lower(): v for k, v in resp.headers.items()}
        for name, header in (declared.get("headers") or {}).items():
            assert name.lower() in headers, f"{where}: header {name} is declared but missing"
            value: Any = headers[name.lower()]
            if self.resolve(header).get("schema", {}).get("type") == "integer":
                value = int(value)
            self.validate(self.resolve(header)["schema"], value, f"{where} header {name}")
        content = declared.get("content")
        if not content:
            assert resp.body == b"", f"{where}: the spec declares no body, got {resp.body[:200]!r}"
        else:
            ctype = headers.get("content-type", "").split(";")[0].strip()
            assert ctype in content, f"{where}: content type {ctype!r} is not declared ({sorted(content)})"
            if ctype == "application/json":
                self.validate(content[ctype]["schema"], json.loads(resp.body), where)
            elif content[ctype].get("schema", {}).get("format") != "binary":
                resp.body.decode("utf-8")  # text, not bytes
        self.seen.add((method.upper(), route, resp.status))

    def operations(self) -> set[tuple[str, str]]:
        return {
            (m.upper(), path) for path, item in self.spec["paths"].items() for m in item if m in HTTP_METHODS
        }


class Client:
    """Requests to a node, each checked against the spec for the route template it was sent to."""

    def __init__(self, node: NodeProcess, conformance: Conformance) -> None:
        self.node = node
        self.conf = conformance

    def __call__(
        self,
        method: str,
        route: str,
        body: Any = None,
        *,
        expect: int | None = None,
        raw: bytes | None = None,
        auth: bool = True,
        headers: dict[str, str] | None = None,
        query: str = "",
        **path_params: str,
    ) -> Response:
        path = route.format(**path_params) + query
        resp = self.node.request(method, path, body, raw=raw, auth=auth, headers=headers)
        if expect is not None:
            assert resp.status == expect, (
                f"{method} {path}: expected {expect}, got {resp.status}: {resp.body!r}"
            )
        self.conf.check(method, route, resp)
        return resp

    def error(
        self, method: str, route: str, body: Any = None, *, expect: int, code: str, **kwargs: Any
    ) -> dict[str, Any]:
        resp = self(method, route, body, expect=expect, **kwargs)
        err = resp.json()["error"]
        assert err["code"] == code, err
        return cast(dict[str, Any], err)


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return load_spec()


def test_spec_module_file_is_valid_openapi(spec: dict[str, Any]) -> None:
    openapi_spec_validator.validate(cast(Any, spec))
    assert spec["openapi"].startswith("3.0")


def test_spec_declares_exactly_the_routes_of_the_app(spec: dict[str, Any]) -> None:
    app = HTTPApi(cast(Any, None)).app
    routes = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    assert routes == Conformance(spec).operations()


def test_spec_security_matches_the_public_paths(spec: dict[str, Any]) -> None:
    assert spec["security"], "the token must be required globally"
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            if path in PUBLIC_PATHS:
                assert op.get("security") == [], f"{method} {path} is public: it needs security: []"
                assert "401" not in op["responses"], f"{method} {path} never answers 401"
            else:
                assert "security" not in op, f"{method} {path} must keep the global security"
                assert "401" in op["responses"], f"{method} {path} answers 401 without the token"
            assert "500" in op["responses"], f"{method} {path}: every route can answer 500"


def test_spec_examples_match_their_schemas(spec: dict[str, Any]) -> None:
    """Examples are real answers: each must validate against the schema it illustrates."""
    conf = Conformance(spec)
    checked = 0

    def media_examples(where: str, content: dict[str, Any]) -> None:
        nonlocal checked
        for ctype, media in content.items():
            schema = media.get("schema")
            if ctype != "application/json" or schema is None:
                continue
            if "example" in media:
                conf.validate(schema, media["example"], f"{where} {ctype} example")
                checked += 1
            for name, ex in (media.get("examples") or {}).items():
                conf.validate(schema, conf.resolve(ex)["value"], f"{where} {ctype} example {name}")
                checked += 1

    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in HTTP_METHODS:
                continue
            body = conf.resolve(op.get("requestBody"))
            if body:
                media_examples(f"{method} {path} request", body["content"])
            for status, resp in op["responses"].items():
                media_examples(f"{method} {path} {status}", conf.resolve(resp).get("content") or {})
    for name, schema in spec["components"]["schemas"].items():
        if "example" in schema:
            conf.validate({"$ref": f"#/components/schemas/{name}"}, schema["example"], f"schema {name}")
            checked += 1
    assert checked > 30


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        (1, True),
        (INT64_MAX, True),
        (1.5, True),
        ("text", True),
        (None, True),
        ({"$blob": "AP8="}, True),
        ({"$float": "NaN"}, True),
        ({"$float": "-Infinity"}, True),
        (INT64_MAX + 1, False),
        ({"$blob": "!!"}, False),
        ({"$float": "nan"}, False),
        ({"$int": "1"}, False),
        ({"$blob": "AA==", "x": 1}, False),
        (True, False),
        ([1], False),
    ],
)
def test_value_schema_accepts_exactly_the_row_encoding(spec: dict[str, Any], value: Any, valid: bool) -> None:
    """The converter and the Value schema together: oneOf stays exclusive, nullable works, formats count."""
    conf = Conformance(spec)
    errors = list(conf.validator({"$ref": "#/components/schemas/Value"}).iter_errors(value))
    assert (not errors) == valid, errors


def test_param_value_schema_adds_booleans_and_int_strings(spec: dict[str, Any]) -> None:
    conf = Conformance(spec)
    v = conf.validator({"$ref": "#/components/schemas/ParamValue"})
    for ok in (True, {"$int": "-9223372036854775808"}, {"$blob": "AAEC"}, None, 3):
        assert v.is_valid(ok), ok
    for bad in ({"$int": "1.5"}, {"x": 1}, [1]):
        assert not v.is_valid(bad), bad


def test_a_response_the_spec_does_not_declare_fails_the_check(spec: dict[str, Any]) -> None:
    """The check itself must bite: undeclared status, wrong shape, wrong content type."""
    conf = Conformance(spec)
    ok = Response(
        status=200, headers={"Content-Type": "application/json"}, body=b'{"status":"ok","node":"n"}'
    )
    conf.check("GET", "/healthz", ok)
    with pytest.raises(AssertionError, match="does not declare"):
        conf.check("GET", "/healthz", Response(status=404, headers={}, body=b""))
    with pytest.raises(AssertionError, match="does not match"):
        conf.check(
            "GET",
            "/healthz",
            Response(
                status=200,
                headers={"Content-Type": "application/json"},
                body=b'{"status":"ok","node":"n","extra":1}',
            ),
        )
    with pytest.raises(AssertionError, match="content type"):
        conf.check(
            "GET", "/healthz", Response(status=200, headers={"Content-Type": "text/plain"}, body=b"ok")
        )
    with pytest.raises(AssertionError, match="does not match"):
        conf.check(
            "POST",
            "/query",
            Response(
                status=200,
                headers={"Content-Type": "application/json"},
                body=b'{"columns":["a"],"types":[null],"rows":[[[1]]]}',
            ),
        )
    with pytest.raises(AssertionError, match="does not match"):
        conf.check(
            "POST",
            "/query",
            Response(
                status=500,
                headers={"Content-Type": "application/json"},
                body=b'{"error":{"code":"config_error","message":"m","setting":"s"}}',
            ),
        )


# ------------------------------------------------------------------------------------------------ one node


def test_served_spec_is_valid_openapi(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db"], token=TOKEN)
    resp = node.request("GET", "/openapi.yaml", auth=False)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("application/yaml")
    served = resp.body.decode()
    assert served == openapi_text()
    spec = load_spec(served)
    openapi_spec_validator.validate(cast(Any, spec))
    Conformance(spec).check("GET", "/openapi.yaml", resp)


def test_every_route_answers_as_the_spec_declares(node_factory: NodeFactory, tmp_path: Path) -> None:
    node = node_factory(args=["app.db", "--create-db-dir", "created"], token=TOKEN)
    conf = Conformance(load_spec(node.request("GET", "/openapi.yaml", auth=False).body.decode()))
    call = Client(node, conf)

    # The open routes answer without a token; every other route refuses without one, or with a wrong one.
    for route in ("/healthz", "/readyz", "/openapi.yaml", "/docs"):
        call("GET", route, auth=False, expect=200)
    for method, route in sorted(conf.operations()):
        if route in PUBLIC_PATHS:
            continue
        resp = call(
            method,
            route,
            {"sql": "SELECT 1"} if method == "POST" else None,
            auth=False,
            expect=401,
            id="app.db",
        )
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="sqlite-ha"'
        assert resp.json()["error"]["code"] == "unauthorized"
    call.error("GET", "/status", headers={"Authorization": "Bearer wrong"}, expect=401, code="unauthorized")
    call("GET", "/status", headers={"Authorization": TOKEN}, expect=200)  # the bare token works too

    # Queries: one object in, one result out; writes answer rows_affected and last_insert_id.
    created = call(
        "POST",
        "/query",
        {"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, name TEXT, b BLOB, f REAL)"},
        expect=200,
    ).json()
    assert created == {
        "columns": ["rows_affected", "last_insert_id"],
        "types": ["INTEGER", "INTEGER"],
        "rows": [[0, 0]],
    }
    wrote = call(
        "POST",
        "/",
        {
            "sql": "INSERT INTO t(name, b, f) VALUES (:name, :b, :f)",
            "params": {"$name": "alice", "b": {"$blob": "AAEC"}, "@f": {"$float": "NaN"}},
        },
        expect=200,
    ).json()
    assert wrote["rows"] == [[1, 1]]
    listed = call(
        "POST",
        "/databases/{id}",
        [
            {"sql": "INSERT INTO t(name, f) VALUES (?, ?)", "params": ["bob", {"$float": "Infinity"}]},
            {
                "sql": "INSERT INTO t(name, f) VALUES ($1, $2)",
                "params": {"$1": "carol", "$2": {"$float": "-inf"}},
            },
            "SELECT id, name, b, f FROM t ORDER BY id",
            {
                "sql": "SELECT ? AS big, ? AS small, ? AS flag",
                "params": [{"$int": str(INT64_MAX)}, INT64_MIN, True],
            },
        ],
        id="app.db",
        expect=200,
    ).json()
    assert [r["rows"] for r in listed["results"]] == [
        [[1, 2]],
        [[1, 3]],
        [
            [1, "alice", {"$blob": "AAEC"}, None],
            [2, "bob", None, {"$float": "Infinity"}],
            [3, "carol", None, {"$float": "-Infinity"}],
        ],
        [[INT64_MAX, INT64_MIN, 1]],
    ]
    assert listed["results"][2]["types"] == ["INTEGER", "TEXT", "BLOB", "REAL"]
    one = call(
        "POST",
        "/query",
        [{"sql": "SELECT x'00ff' AS b, 1e999 AS inf, 0.5 AS half"}],
        query="?local=true",
        expect=200,
    ).json()
    assert one == {
        "results": [
            {
                "columns": ["b", "inf", "half"],
                "types": [None, None, None],
                "rows": [[{"$blob": "AP8="}, {"$float": "Infinity"}, 0.5]],
            }
        ]
    }
    returning = call(
        "POST", "/query", {"sql": "INSERT INTO t(name) VALUES ('dan') RETURNING id, name"}, expect=200
    ).json()
    assert returning["rows"] == [[4, "dan"]]
    assert call("POST", "/query", {"sql": "SELECT * FROM t WHERE 0"}, expect=200).json()["rows"] == []

    # Refusals: all 400 with the envelope, and nothing of a failed request is kept.
    call.error("POST", "/query", raw=b'{"sql":', expect=400, code="invalid_json")
    call.error("POST", "/query", raw=b"", expect=400, code="invalid_json")
    call.error("POST", "/query", [], expect=400, code="bad_request")
    call.error("POST", "/query", 5, expect=400, code="bad_request")
    call.error("POST", "/", {"sql": "SELECT 1", "foo": 1}, expect=400, code="bad_request")
    call.error("POST", "/query", {"sql": "  "}, expect=400, code="bad_request")
    err = call.error(
        "POST", "/query", {"sql": "SELECT 1", "params": {"1": 1, "a": 2}}, expect=400, code="invalid_params"
    )
    assert "hint" in err
    call.error(
        "POST", "/query", {"sql": "SELECT ?", "params": [{"$blob": "!!"}]}, expect=400, code="invalid_params"
    )
    call.error("POST", "/query", {"sql": "SELECT ?", "params": [2**64]}, expect=400, code="invalid_params")
    call.error("POST", "/query", {"sql": "SELECT :a", "params": {"b": 1}}, expect=400, code="invalid_params")
    err = call.error("POST", "/query", {"sql": "SELEC 1"}, expect=400, code="sql_error")
    assert (err["sqlite_code"], err["index"]) == ("SQLITE_ERROR", 0)
    err = call.error(
        "POST",
        "/databases/{id}",
        [{"sql": "INSERT INTO t(name) VALUES ('eve')"}, {"sql": "INSERT INTO t(id) VALUES (1)"}],
        id="app.db",
        expect=400,
        code="sql_error",
    )
    assert (err["sqlite_code"], err["index"]) == ("SQLITE_CONSTRAINT_PRIMARYKEY", 1)
    count = call("POST", "/query", {"sql": "SELECT count(*) FROM t WHERE name = 'eve'"}, expect=200).json()
    assert count["rows"] == [[0]], "the first statement of a failed request must be rolled back"
    call.error("POST", "/query", {"sql": "BEGIN"}, expect=400, code="statement_not_allowed")
    call.error("POST", "/query", {"sql": "ATTACH 'x.db' AS x"}, expect=400, code="statement_not_allowed")
    err = call.error(
        "POST", "/databases/{id}", {"sql": "SELECT 1"}, id="nope", expect=404, code="database_not_found"
    )
    assert err["database"] == "nope"

    # Backups: a SQLite file holding what was committed, named <UTC stamp>_<id>.
    for route in ("/", "/download", "/databases/{id}"):
        resp = call("GET", route, id="app.db", expect=200)
        assert resp.headers["Content-Type"] == "application/vnd.sqlite3"
        assert re.fullmatch(r'attachment; filename="\d{14}_app\.db"', resp.headers["Content-Disposition"])
        assert int(resp.headers["Content-Length"]) == len(resp.body)
        copy = tmp_path / "copy.db"
        copy.write_bytes(resp.body)
        with sqlite3.connect(copy) as db:
            assert db.execute("SELECT count(*) FROM t").fetchone() == (4,)
        copy.unlink()
    call.error("GET", "/databases/{id}", id="nope", expect=404, code="database_not_found")

    # Databases: list, create (file and memory), refuse duplicates and paths, delete only what the API made.
    listing = call("GET", "/databases", expect=200).json()
    assert listing == {
        "databases": [{"id": "app.db", "path": "app.db", "memory": False, "created_over_api": False}]
    }
    made = call("POST", "/databases", {"dsn": "new.db"}, expect=201).json()
    assert made == {"id": "new.db", "path": "created/new.db", "memory": False, "created_over_api": True}
    err = call.error("POST", "/databases", {"dsn": "new.db"}, expect=409, code="conflict")
    assert err["database"] == "new.db"
    mem = call("POST", "/databases", {"dsn": "file:mem.db?mode=memory"}, expect=201).json()
    assert mem == {"id": "mem.db", "path": None, "memory": True, "created_over_api": True}
    call.error("POST", "/databases", raw=b"{", expect=400, code="invalid_json")
    call.error("POST", "/databases", {}, expect=400, code="bad_request")
    call.error("POST", "/databases", {"dsn": "../x.db"}, expect=400, code="bad_request")
    call.error("POST", "/databases", {"dsn": "bad name!"}, expect=400, code="bad_request")
    call.error("POST", "/databases", {"dsn": "x.db?nope=1"}, expect=400, code="bad_request")
    call("POST", "/databases/{id}", {"sql": "CREATE TABLE m(x)"}, id="mem.db", expect=200)
    call(
        "POST",
        "/databases/{id}",
        {"sql": "INSERT INTO m VALUES (?)", "params": [{"$blob": ""}]},
        id="mem.db",
        expect=200,
    )
    assert call("GET", "/databases/{id}", id="mem.db", expect=200).body.startswith(b"SQLite format 3\x00")
    call("GET", "/databases/{id}", id="new.db", expect=200)
    listing = call("GET", "/databases", expect=200).json()
    assert [d["id"] for d in listing["databases"]] == ["app.db", "new.db", "mem.db"]
    assert call("DELETE", "/databases/{id}", id="new.db", expect=204).body == b""
    call.error("DELETE", "/databases/{id}", id="new.db", expect=404, code="database_not_found")
    err = call.error("DELETE", "/databases/{id}", id="app.db", expect=409, code="conflict")
    assert "hint" in err
    call("DELETE", "/databases/{id}", id="mem.db", expect=204)

    # Health and status.
    assert call("GET", "/healthz", expect=200).json() == {"status": "ok", "node": node.name}
    assert call("GET", "/readyz", expect=200).json() == {"ready": True, "checks": {"databases": True}}
    status = call("GET", "/status", expect=200).json()
    assert status["nats"] is None
    assert [d["id"] for d in status["databases"]] == ["app.db"]
    assert status["databases"][0]["errors"] > 0
    docs = call("GET", "/docs", auth=False, expect=200)
    assert docs.headers["Content-Type"].startswith("text/html")

    # Every operation of the spec was exercised, with a success and with its characteristic errors.
    assert {(m, r) for m, r, _ in conf.seen} == conf.operations()
    for expected in [
        ("POST", "/query", 400),
        ("POST", "/databases/{id}", 404),
        ("POST", "/databases", 409),
        ("DELETE", "/databases/{id}", 409),
        ("DELETE", "/databases/{id}", 204),
        ("POST", "/databases", 201),
        ("GET", "/databases/{id}", 404),
    ]:
        assert expected in conf.seen, expected

    # Outside the spec's routes, errors keep the same envelope.
    error_schema = {"$ref": "#/components/schemas/Error"}
    resp = node.request("GET", "/nothing")
    assert resp.status == 404
    conf.validate(error_schema, resp.json(), "GET /nothing")
    resp = node.request("PUT", "/query")
    assert (resp.status, resp.headers.get("Allow")) == (405, "POST")
    conf.validate(error_schema, resp.json(), "PUT /query")


def test_node_without_token_or_create_dir(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db"])
    call = Client(node, Conformance(load_spec()))
    call("GET", "/status", expect=200)
    call("POST", "/query", {"sql": "SELECT 1"}, expect=200)
    err = call.error("POST", "/databases", {"dsn": "new.db"}, expect=400, code="statement_not_allowed")
    assert "--create-db-dir" in err["hint"]


def test_not_ready_node_answers_503_with_its_checks(node_factory: NodeFactory) -> None:
    """A node whose NATS server is unreachable serves HTTP but is not ready."""
    node = node_factory(args=["app.db", "--replication-url", f"nats://127.0.0.1:{free_port()}"], start=False)
    node.start(wait_ready=False)
    wait_for(lambda: _answers(node, "/healthz"), 30, "the node to serve HTTP")
    call = Client(node, Conformance(load_spec()))
    ready = call("GET", "/readyz", expect=503).json()
    assert ready == {"ready": False, "checks": {"databases": True, "nats": False, "jetstream": False}}
    nats = call("GET", "/status", expect=200).json()["nats"]
    assert (nats["connected"], nats["embedded"]) == (False, False)


def test_replicating_node_reports_nats_in_readiness_and_status(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db"], nats_port=None)
    call = Client(node, Conformance(load_spec()))
    ready = call("GET", "/readyz", expect=200).json()
    assert ready == {"ready": True, "checks": {"databases": True, "nats": True, "jetstream": True}}
    nats = call("GET", "/status", expect=200).json()["nats"]
    assert nats["connected"] is nats["jetstream"] is nats["embedded"] is True
    assert nats["last_error"] is None


def test_limits_answer_as_declared(node_factory: NodeFactory) -> None:
    """Body size (413), result rows and query time (400) each refuse with the declared envelope."""
    node = node_factory(
        args=[
            "app.db",
            "--create-db-dir",
            "created",
            "--max-body-size",
            "1KB",
            "--max-result-rows",
            "10",
            "--query-timeout",
            "200ms",
        ],
        token=TOKEN,
    )
    call = Client(node, Conformance(load_spec()))
    big = "x" * 2048
    call("POST", "/query", {"sql": "SELECT ?", "params": [big[:100]]}, expect=200)
    for route in ("/", "/query", "/databases/{id}"):
        call.error(
            "POST",
            route,
            {"sql": "SELECT ?", "params": [big]},
            id="app.db",
            expect=413,
            code="payload_too_large",
        )
    err = call.error("POST", "/databases", {"dsn": big}, expect=413, code="payload_too_large")
    assert "1024" in err["message"]

    series = "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT {n}) SELECT {what} FROM c"
    assert (
        len(call("POST", "/query", {"sql": series.format(n=10, what="x")}, expect=200).json()["rows"]) == 10
    )
    err = call.error(
        "POST", "/query", {"sql": series.format(n=11, what="x")}, expect=400, code="result_too_large"
    )
    assert "hint" in err
    err = call.error(
        "POST", "/query", {"sql": series.format(n=10**10, what="count(*)")}, expect=400, code="query_timeout"
    )
    assert "hint" in err


def _answers(node: NodeProcess, path: str) -> bool:
    try:
        return node.request("GET", path, timeout=1).status == 200
    except OSError:
        return False


# ------------------------------------------------------------------------------------------------ regressions
# Bugs this suite found once; each answer must stay as the spec declares it.


def test_locked_database_answers_503_busy(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db", "--busy-timeout", "100ms"], token=TOKEN)
    call = Client(node, Conformance(load_spec()))
    call("POST", "/query", {"sql": "CREATE TABLE t(x)"}, expect=200)
    other = sqlite3.connect(node.workdir / "app.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t VALUES (1)")
        err = call.error("POST", "/query", {"sql": "INSERT INTO t VALUES (2)"}, expect=503, code="busy")
        assert err.get("hint")
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_database_named_like_part_of_the_file_prefix_can_be_created(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db", "--create-db-dir", "created"], token=TOKEN)
    call = Client(node, Conformance(load_spec()))
    made = call("POST", "/databases", {"dsn": "file:e"}, expect=201).json()
    assert (made["id"], made["path"]) == ("e", "created/e")


# ------------------------------------------------------------------------------------------------ /docs


def test_docs_page_renders_every_route_without_scripts(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db"], token=TOKEN)
    resp = node.request("GET", "/docs", auth=False)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/html")
    page = resp.body.decode()
    spec = load_spec()
    for path, item in spec["paths"].items():
        assert f"<code>{path}</code>" in page, path
        for method, op in item.items():
            if method in HTTP_METHODS:
                assert html.escape(op["summary"]) in page
    for name in spec["components"]["schemas"]:
        assert f'id="schema-{name}"' in page
    lowered = page.lower()
    assert "<script" not in lowered
    for external in ("<link", " src=", "@import", "url(", "<iframe"):
        assert external not in lowered, external
    assert page == render_docs(openapi_text())


def test_docs_escape_the_spec_and_are_cached() -> None:
    spec = {
        "openapi": "3.0.3",
        "info": {"title": "<b>t</b>", "version": "1", "description": "a `<x>` and <script>alert(1)</script>"},
        "paths": {
            "/a/{id}": {
                "get": {
                    "summary": "<img src=x>",
                    "responses": {
                        "200": {
                            "description": "ok",
                            "content": {"application/json": {"example": {"k": "</pre><script>"}}},
                        },
                    },
                }
            }
        },
    }
    text = yaml.safe_dump(spec)
    page = render_docs(text)
    assert "<script" not in page.lower()
    assert "<img" not in page
    assert "<b>t</b>" not in page
    assert "&lt;script&gt;" in page
    assert "<code>&lt;x&gt;</code>" in page
    assert render_docs(text) is page
