"""The OpenAPI spec against real nodes: a valid document, true to every answer a node gives, and /docs.

Every response a test provokes goes through ``Conformance.check``: its status must be declared for that route
and method, its content type must be one the spec lists, and a JSON body must validate against the declared
schema (OpenAPI 3.0 schemas converted to JSON Schema 2020-12, ``nullable`` and ``$ref`` included).
"""

from __future__ import annotations

import asyncio
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
import nats
import openapi_spec_validator
import pytest
import yaml
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from sqlite_ha.server.http.app import (
    MIN_SEQ_HEADER,
    PUBLIC_PATHS,
    SEQ_HEADER,
    SIGNED_PATHS,
    HTTPApi,
    openapi_text,
)
from sqlite_ha.server.http.docs import render_docs
from sqlite_ha.testing import NodeProcess, Response, free_port, nats_credentials, wait_for

NodeFactory = Callable[..., NodeProcess]

SPEC_URI = "urn:sqlite-ha:openapi"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
TOKEN = "secret"
QUERY_ROUTES = ("/", "/query", "/databases/{id}")
# The fields of a database's replication status a test can know exactly; the others (applied, rows_applied,
# rows_skipped, outbox) follow how the node applies its own change sets and when it records that.
STATUS_CONTRACT = (
    "database",
    "consumer",
    "applied_seq",
    "last_seq",
    "lag_messages",
    "lag_seconds",
    "published",
    "publish_failures",
    "parked",
    "last_error",
    "async",
)

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
            header = self.resolve(header)
            if name.lower() not in headers:
                assert not header.get("required"), f"{where}: header {name} is required but missing"
                continue
            value: Any = headers[name.lower()]
            if header.get("schema", {}).get("type") == "integer":
                assert re.fullmatch(r"-?[0-9]+", value), (
                    f"{where}: header {name} is not an integer: {value!r}"
                )
                value = int(value)
            self.validate(header["schema"], value, f"{where} header {name}")
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
        if method == "POST" and route in QUERY_ROUTES and resp.status in (200, 202):
            # What the schema cannot say: the header and the body carry the same seq, or neither has one.
            header = {k.lower(): v for k, v in resp.headers.items()}.get(SEQ_HEADER.lower())
            assert resp.json().get("seq") == (None if header is None else int(header)), (
                f"{method} {path}: {SEQ_HEADER} {header!r} disagrees with the body {resp.body[:300]!r}"
            )
        return resp

    def with_seq(self, route: str, body: Any, **kwargs: Any) -> int:
        """A write that must be replicated: 200 with a seq; returns it."""
        seq = self("POST", route, body, expect=200, **kwargs).json().get("seq")
        assert isinstance(seq, int), f"POST {route} {body!r}: a replicated write answers a seq"
        return seq

    def without_seq(self, route: str, body: Any, **kwargs: Any) -> dict[str, Any]:
        """A read, a write that changed nothing, or an async-mode write: 200 without seq; returns the body."""
        doc = cast(dict[str, Any], self("POST", route, body, expect=200, **kwargs).json())
        assert "seq" not in doc, f"POST {route} {body!r} answered a seq: {doc}"
        return doc

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
            elif path in SIGNED_PATHS:
                assert op.get("security") == [{"nodeSignature": []}], f"{method} {path}: node signature"
                assert "401" in op["responses"], f"{method} {path} answers 401 without the signature"
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
    json_type = {"Content-Type": "application/json"}
    write = b'{"columns":["rows_affected","last_insert_id"],"types":["INTEGER","INTEGER"],"rows":[[1,1]]'
    conf.check(
        "POST",
        "/query",
        Response(status=200, headers={**json_type, "X-Sequence": "7"}, body=write + b',"seq":7}'),
    )
    with pytest.raises(AssertionError, match="not an integer"):
        conf.check(
            "POST",
            "/query",
            Response(status=200, headers={**json_type, "X-Sequence": "x"}, body=write + b"}"),
        )
    with pytest.raises(AssertionError, match="does not match"):  # seq starts at 1
        conf.check("POST", "/query", Response(status=200, headers=json_type, body=write + b',"seq":0}'))
    with pytest.raises(AssertionError, match="does not match"):  # seq belongs to the answer, not to a result
        conf.check(
            "POST",
            "/query",
            Response(status=200, headers=json_type, body=b'{"results":[' + write + b',"seq":1}]}'),
        )
    with pytest.raises(AssertionError, match="does not match"):  # a 202 says why it is pending
        conf.check("POST", "/query", Response(status=202, headers=json_type, body=write + b"}"))
    with pytest.raises(AssertionError, match="required but missing"):
        conf.check(
            "GET",
            "/status",
            Response(status=401, headers=json_type, body=b'{"error":{"code":"unauthorized","message":"m"}}'),
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
    """One node without NATS: it replicates through the local log, so its writes answer a seq too."""
    node = node_factory(
        args=["app.db", "--create-db-dir", "created", "--replication-timeout", "300ms"], token=TOKEN
    )
    conf = Conformance(load_spec(node.request("GET", "/openapi.yaml", auth=False).body.decode()))
    call = Client(node, conf)

    # The open routes answer without a token; every other route refuses without one, or with a wrong one.
    for route in ("/healthz", "/readyz", "/openapi.yaml", "/docs"):
        call("GET", route, auth=False, expect=200)
    for method, route in sorted(conf.operations()):
        if route in PUBLIC_PATHS or route in SIGNED_PATHS:
            continue
        resp = call(
            method,
            route,
            {"sql": "SELECT 1"} if method == "POST" else None,
            auth=False,
            expect=401,
            id="app.db",
            name=f"{node.name}_app_db",
        )
        assert resp.headers["WWW-Authenticate"] == 'Bearer realm="sqlite-ha"'
        assert resp.json()["error"]["code"] == "unauthorized"
    call.error("GET", "/status", headers={"Authorization": "Bearer wrong"}, expect=401, code="unauthorized")
    call("GET", "/status", headers={"Authorization": TOKEN}, expect=200)  # the bare token works too

    # Queries: one object in, one result out; writes answer rows_affected and last_insert_id, and the seq of
    # their change set (the local log numbers each database's change sets 1, 2, 3, ...).
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
        "seq": 1,
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
    assert (wrote["rows"], wrote["seq"]) == ([[1, 1]], 2)
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
    assert listed["seq"] == 3, "a list that wrote answers one seq, at the top level"
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
    assert (returning["rows"], returning["seq"]) == ([[4, "dan"]], 4)
    assert call.without_seq("/query", {"sql": "SELECT * FROM t WHERE 0"})["rows"] == []

    # Read-your-writes: min_seq (or X-Min-Sequence) waits until the node has applied the log up to there; the
    # local log is applied at once. Beyond what the log holds, the node says so at once and the request does
    # not run, not even a write.
    assert call.without_seq("/query", {"sql": "SELECT count(*) FROM t"}, query="?min_seq=4")["rows"] == [[4]]
    call.without_seq("/", {"sql": "SELECT 1"}, headers={MIN_SEQ_HEADER: "4"})
    call.without_seq("/databases/{id}", {"sql": "SELECT 1"}, id="app.db", query="?min_seq=0")
    err = call.error(
        "POST", "/query", {"sql": "SELECT 1"}, query="?min_seq=1000", expect=400, code="min_seq_beyond_log"
    )
    assert (err["last_seq"], err["min_seq"]) == (4, 1000)
    assert "hint" in err
    call.error(
        "POST",
        "/databases/{id}",
        {"sql": "INSERT INTO t(name) VALUES ('ghost')"},
        id="app.db",
        headers={MIN_SEQ_HEADER: "1000"},
        expect=400,
        code="min_seq_beyond_log",
    )
    for bad in ("abc", "-1", "1.5"):
        err = call.error(
            "POST", "/", {"sql": "SELECT 1"}, query=f"?min_seq={bad}", expect=400, code="bad_request"
        )
        assert "min_seq" in err["message"]
    call.error(
        "POST", "/query", {"sql": "SELECT 1"}, headers={MIN_SEQ_HEADER: "x"}, expect=400, code="bad_request"
    )
    assert call.without_seq("/query", {"sql": "SELECT count(*) FROM t WHERE name = 'ghost'"})["rows"] == [[0]]

    # The local log: this node's one consumer per database, which cannot be deleted.
    consumer = f"{node.name}_app_db"
    local = {"name": consumer, "node": node.name, "database": "app.db", "delivered_seq": 4, "num_pending": 0}
    assert call("GET", "/replications", expect=200).json() == {"replications": [local]}
    assert call("GET", "/replications/{name}", name=consumer, expect=200).json() == local
    err = call.error("GET", "/replications/{name}", name="nope", expect=404, code="not_found")
    assert err["consumer"] == "nope"
    err = call.error("DELETE", "/replications/{name}", name=consumer, expect=409, code="conflict")
    assert err["consumer"] == consumer
    call.error("DELETE", "/replications/{name}", name="nope", expect=404, code="not_found")
    replication = call("GET", "/status", expect=200).json()["replication"]
    assert (replication["driver"], replication["joined"], replication["last_error"]) == ("local", True, None)
    assert (replication["log"]["driver"], replication["log"]["published"]) == ("local", 4)
    assert list(replication["databases"]) == ["app.db"]
    app = replication["databases"]["app.db"]
    assert {k: app[k] for k in STATUS_CONTRACT} == {
        "database": "app.db",
        "consumer": consumer,
        "applied_seq": 4,
        "last_seq": 4,
        "lag_messages": 0,
        "lag_seconds": 0.0,
        "published": 4,
        "publish_failures": 0,
        "parked": {},
        "last_error": None,
        "async": False,
    }
    _wait_for_empty_outbox(call)

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
    ready = call("GET", "/readyz", expect=200).json()
    assert ready == {"ready": True, "checks": {"databases": True, "replication": True}}
    status = call("GET", "/status", expect=200).json()
    assert status["nats"] is None
    assert [d["id"] for d in status["databases"]] == ["app.db"]
    assert status["databases"][0]["errors"] > 0
    docs = call("GET", "/docs", auth=False, expect=200)
    assert docs.headers["Content-Type"].startswith("text/html")

    # Heartbeats are for nodes in writer mode pinned (tests/e2e/test_pinned.py): this one runs none.
    heartbeat = {"node_id": "n2", "target": "http://127.0.0.1:1"}
    call.error("POST", "/_ha/heartbeat", heartbeat, auth=False, expect=409, code="not_pinned")

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
    """A node whose NATS server is unreachable serves HTTP and reads, but is not ready and refuses writes."""
    node = node_factory(args=["app.db", "--replication-url", f"nats://127.0.0.1:{free_port()}"], start=False)
    node.start(wait_ready=False)
    wait_for(lambda: _answers(node, "/healthz"), 30, "the node to serve HTTP")
    call = Client(node, Conformance(load_spec()))
    ready = call("GET", "/readyz", expect=503).json()
    assert ready == {
        "ready": False,
        "checks": {"databases": True, "nats": False, "jetstream": False, "replication": False},
    }
    err = call.error("POST", "/query", {"sql": "CREATE TABLE t(x)"}, expect=503, code="not_ready")
    assert "nothing was written" in err["message"]
    tables = call.without_seq("/query", {"sql": "SELECT count(*) FROM sqlite_master WHERE name = 't'"})
    assert tables["rows"] == [[0]]
    status = call("GET", "/status", expect=200).json()
    assert (status["nats"]["connected"], status["nats"]["embedded"]) == (False, False)
    replication = status["replication"]
    assert (replication["driver"], replication["joined"]) == ("jetstream", False)
    assert replication["log"]["subscriptions"] == []
    app = replication["databases"]["app.db"]
    assert (app["applied_seq"], app["last_seq"], app["lag_messages"], app["lag_seconds"]) == (
        0,
        None,
        None,
        None,
    )


def test_replicating_node_answers_as_the_spec_declares(node_factory: NodeFactory, tmp_path: Path) -> None:
    """A node with its embedded NATS: writes answer their stream sequence, reads wait for it, and the
    consumers are JetStream's."""
    node = node_factory(args=["app.db", "--create-db-dir", "created"], nats_port=None, token=TOKEN)
    conf = Conformance(load_spec())
    call = Client(node, conf)
    ready = call("GET", "/readyz", auth=False, expect=200).json()
    assert ready == {
        "ready": True,
        "checks": {"databases": True, "nats": True, "jetstream": True, "replication": True},
    }

    # Writes answer seq (and X-Sequence, which Client checks against it), increasing; other answers have none.
    seqs = [
        call.with_seq("/query", {"sql": "CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT)"}),
        call.with_seq("/", {"sql": "INSERT INTO t(v) VALUES (?)", "params": ["a"]}),
        call.with_seq(
            "/databases/{id}",
            [{"sql": "INSERT INTO t(v) VALUES ('b')"}, "SELECT count(*) FROM t"],
            id="app.db",
        ),
    ]
    assert seqs == sorted(set(seqs)), f"seqs must increase: {seqs}"
    last = seqs[-1]
    call.without_seq("/query", [{"sql": "SELECT 1"}])
    call.without_seq(
        "/query", {"sql": "UPDATE t SET v = 'x' WHERE 0"}
    )  # changed no row: nothing to replicate

    # Read-your-writes: min_seq as a query parameter or as a header; a bad one is refused before anything ran.
    count = call.without_seq("/query", {"sql": "SELECT count(*) FROM t"}, query=f"?min_seq={last}")
    assert count["rows"] == [[2]]
    rows = call.without_seq("/", {"sql": "SELECT v FROM t ORDER BY id"}, headers={MIN_SEQ_HEADER: str(last)})
    assert rows["rows"] == [["a"], ["b"]]
    call.error("POST", "/query", {"sql": "SELECT 1"}, query="?min_seq=soon", expect=400, code="bad_request")
    call.error(
        "POST",
        "/databases/{id}",
        {"sql": "INSERT INTO t(v) VALUES ('no')"},
        id="app.db",
        headers={MIN_SEQ_HEADER: "-5"},
        expect=400,
        code="bad_request",
    )

    # A node's databases share the stream's sequence: a new database's first write comes after the others.
    call("POST", "/databases", {"dsn": "new.db"}, expect=201)
    new_seq = call.with_seq("/databases/{id}", {"sql": "CREATE TABLE n(x)"}, id="new.db")
    assert new_seq > last
    call.without_seq("/databases/{id}", {"sql": "SELECT * FROM n"}, id="new.db", query=f"?min_seq={new_seq}")

    status = call("GET", "/status", expect=200).json()
    nats = status["nats"]
    assert (nats["connected"], nats["jetstream"], nats["embedded"], nats["last_error"]) == (
        True,
        True,
        True,
        None,
    )
    replication = status["replication"]
    assert (replication["driver"], replication["joined"], replication["last_error"]) == (
        "jetstream",
        True,
        None,
    )
    log = replication["log"]
    assert (log["driver"], log["stream"], log["published"], log["publish_errors"]) == (
        "jetstream",
        "ha_replication",
        4,
        0,
    )
    assert sorted(s["consumer"] for s in log["subscriptions"]) == [
        f"{node.name}_app_db",
        f"{node.name}_new_db",
    ]
    app = replication["databases"]["app.db"]
    assert (
        app["consumer"],
        app["applied_seq"],
        app["last_seq"],
        app["lag_messages"],
        app["lag_seconds"],
    ) == (
        f"{node.name}_app_db",
        last,
        last,
        0,
        0.0,
    )
    assert (app["published"], app["publish_failures"], app["parked"], app["async"]) == (3, 0, {}, False)
    _wait_for_empty_outbox(call)

    # Consumers: JetStream's view of every consumer of the stream.
    consumer = f"{node.name}_app_db"
    listed = {c["name"]: c for c in call("GET", "/replications", expect=200).json()["replications"]}
    assert sorted(listed) == [consumer, f"{node.name}_new_db"]
    mine = call("GET", "/replications/{name}", name=consumer, expect=200).json()
    assert (mine["stream"], mine["filter_subject"], mine["node"], mine["database"]) == (
        "ha_replication",
        "ha_replication.app_db",
        node.name,
        "app.db",
    )
    assert (mine["delivered_stream_seq"], mine["num_pending"], mine["deliver_policy"]) == (last, 0, "all")
    assert mine["created"] == listed[consumer]["created"]
    err = call.error("GET", "/replications/{name}", name="nope", expect=404, code="not_found")
    assert err["consumer"] == "nope"
    call.error("DELETE", "/replications/{name}", name="nope", expect=404, code="not_found")
    call.error("GET", "/replications/{name}", name="not.valid", expect=404, code="not_found")

    # Deleting the consumer of a running node: the node recreates it right after what it applied.
    assert call("DELETE", "/replications/{name}", name=consumer, expect=204).body == b""
    wait_for(
        lambda: call("GET", "/replications/{name}", name=consumer).status == 200,
        30,
        "the node to recreate its consumer",
    )
    again = call.with_seq("/query", {"sql": "INSERT INTO t(v) VALUES ('c')"})
    assert again > new_seq
    count = call.without_seq("/query", {"sql": "SELECT count(*) FROM t"}, query=f"?min_seq={again}")
    assert count["rows"] == [[3]]
    recreated = call("GET", "/replications/{name}", name=consumer, expect=200).json()
    assert (recreated["deliver_policy"], recreated["delivered_stream_seq"]) == ("by_start_sequence", again)

    # Snapshots: none yet, then taken, then skipped (nothing changed), and downloadable.
    call("GET", "/snapshot", expect=404)
    wait_for(
        lambda: call("POST", "/snapshot").json().get("snapshot", {}).get("seq") == again,
        10,
        "a snapshot including the last write",
    )
    skipped = call("POST", "/databases/{id}/snapshot", id="app.db", expect=200).json()
    assert (skipped["taken"], skipped["snapshot"]["seq"]) == (False, again)
    assert call("GET", "/databases/{id}/snapshot", id="app.db", expect=200).headers["X-Sequence"] == str(
        again
    )
    assert call("GET", "/snapshot", expect=200).body.startswith(b"SQLite format 3\x00")
    call("GET", "/databases/{id}/snapshot", id="nope.db", expect=404)
    call("POST", "/databases/{id}/snapshot", id="nope.db", expect=404)
    listing = call("GET", "/snapshots", expect=200).json()["snapshots"]
    assert listing["app.db"]["seq"] == again
    assert listing["new.db"] is None

    # Loading a file: into an empty database it works; anything else is refused before writing.
    source = tmp_path / "source.db"
    conn = sqlite3.connect(source)
    conn.execute("CREATE TABLE s(id INTEGER PRIMARY KEY, v TEXT)")
    conn.executemany("INSERT INTO s(v) VALUES (?)", [(f"v{i}",) for i in range(10)])
    conn.commit()
    conn.close()
    call("POST", "/databases", {"dsn": "loaded.db"}, expect=201)
    done = call("POST", "/databases/{id}/load", id="loaded.db", raw=source.read_bytes(), expect=200).json()
    assert (done["tables"], done["rows"]) == (1, 10)
    call.error("POST", "/load", raw=source.read_bytes(), expect=409, code="conflict")
    call.error("POST", "/databases/{id}/load", id="loaded.db", raw=b"junk", expect=400, code="bad_request")
    call.error(
        "POST", "/databases/{id}/load", id="nope.db", raw=b"junk", expect=404, code="database_not_found"
    )

    seen = {(m, r) for m, r, _ in conf.seen}
    covered = ("/replications", "/snapshot", "/load", "/databases/{id}/load")
    assert {(m, r) for m, r in conf.operations() if r.startswith(covered)} <= seen


def test_write_the_log_does_not_take_answers_202_pending(node_factory: NodeFactory) -> None:
    """The 202 outcome, provoked deterministically: the stream is deleted behind the node's back, so while
    NATS stays connected every publish finds no stream (a log refusing a change set, or not acknowledging it
    within --replication-timeout, takes the same path)."""
    node = node_factory(args=["app.db"], nats_port=None, token=TOKEN)
    call = Client(node, Conformance(load_spec()))
    created = call.with_seq("/query", {"sql": "CREATE TABLE t(v)"})
    call.without_seq("/query", {"sql": "SELECT 1"}, query=f"?min_seq={created}")  # its outbox entry is gone
    assert node.nats_port
    asyncio.run(_delete_stream(node.nats_port))

    one = call("POST", "/query", {"sql": "INSERT INTO t VALUES (1)"}, expect=202).json()
    assert one["rows"] == [[1, 1]]
    many = call(
        "POST",
        "/databases/{id}",
        [{"sql": "INSERT INTO t VALUES (2)"}, "SELECT count(*) FROM t"],
        id="app.db",
        expect=202,
    ).json()
    assert many["results"][1]["rows"] == [[2]]
    for pending in (one["replication"], many["replication"]):
        assert (pending["status"], pending["code"]) == ("pending", "replication_pending")
        assert "do not retry" in pending["hint"]
    # Committed here, kept in the outbox for the relay: not lost, and not to be retried.
    assert call.without_seq("/query", {"sql": "SELECT count(*) FROM t"})["rows"] == [[2]]
    app = call("GET", "/status", expect=200).json()["replication"]["databases"]["app.db"]
    assert (app["outbox"], app["publish_failures"]) == (2, 2)


def test_node_that_loses_its_log_refuses_writes_with_503_not_replicating(node_factory: NodeFactory) -> None:
    """node2 runs no NATS server of its own (--nats-port 0, the default of NodeProcess) and replicates through
    node1's; once node1 is gone, node2 is not ready, refuses writes and still serves reads."""
    hub = node_factory(args=["app.db"], nats_port=None, token=TOKEN)
    node = node_factory(
        args=["app.db", "--replication-url", f"nats://127.0.0.1:{hub.nats_port}"], token=TOKEN
    )
    assert node.command[node.command.index("--nats-port") + 1] == "0"
    conf = Conformance(load_spec())
    call, hub_call = Client(node, conf), Client(hub, conf)
    call.with_seq("/query", {"sql": "CREATE TABLE t(v)"})
    seq = call.with_seq("/query", {"sql": "INSERT INTO t VALUES ('from node2')"})
    # The seq is a read-your-writes token on any node.
    on_hub = hub_call.without_seq("/query", {"sql": "SELECT v FROM t"}, query=f"?min_seq={seq}")
    assert on_hub["rows"] == [["from node2"]]
    call.without_seq("/query", {"sql": "SELECT 1"}, query=f"?min_seq={seq}")
    _wait_for_empty_outbox(call)
    names = {c["name"] for c in call("GET", "/replications", expect=200).json()["replications"]}
    assert names == {f"{hub.name}_app_db", f"{node.name}_app_db"}, "every node's consumers"

    hub.stop()

    def lost() -> bool:
        resp = call("GET", "/readyz", auth=False)
        return resp.status == 503 and resp.json()["checks"]["nats"] is False

    wait_for(lost, 30, "node2 to lose its log")
    ready = call("GET", "/readyz", auth=False, expect=503).json()
    assert ready == {
        "ready": False,
        "checks": {"databases": True, "nats": False, "jetstream": False, "replication": True},
    }
    err = call.error(
        "POST", "/query", {"sql": "INSERT INTO t VALUES ('lost')"}, expect=503, code="not_replicating"
    )
    assert "nothing was written" in err["message"]
    assert "hint" in err
    call.error(
        "POST",
        "/databases/{id}",
        [{"sql": "INSERT INTO t VALUES ('lost')"}, "SELECT 1"],
        id="app.db",
        expect=503,
        code="not_replicating",
    )
    assert call.without_seq("/", {"sql": "SELECT v FROM t"})["rows"] == [["from node2"]]
    status = call("GET", "/status", expect=200).json()
    assert (status["nats"]["connected"], status["nats"]["embedded"]) == (False, False)
    replication = status["replication"]
    assert (replication["joined"], replication["log"]["connected"]) == (True, False)
    app = replication["databases"]["app.db"]
    assert (app["applied_seq"], app["last_seq"], app["lag_messages"], app["outbox"]) == (seq, None, None, 0)


def test_async_replication_answers_writes_without_seq(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db", "--async-replication"], token=TOKEN)
    call = Client(node, Conformance(load_spec()))
    call.without_seq("/query", {"sql": "CREATE TABLE t(v)"})
    call.without_seq("/databases/{id}", [{"sql": "INSERT INTO t VALUES (1)"}], id="app.db")
    assert call("GET", "/status", expect=200).json()["replication"]["databases"]["app.db"]["async"] is True


def _wait_for_empty_outbox(call: Client, database: str = "app.db") -> None:
    """Every change set committed on the node is known to be in the log (and recorded as such)."""

    def empty() -> bool:
        status = call("GET", "/status", expect=200).json()
        return cast(bool, status["replication"]["databases"][database]["outbox"] == 0)

    wait_for(empty, 10, f"the outbox of {database} to empty", interval=0.1)


async def _delete_stream(nats_port: int) -> None:
    nc = await nats.connect(f"nats://127.0.0.1:{nats_port}", **nats_credentials())
    try:
        assert await nc.jetstream().delete_stream("ha_replication")
    finally:
        await nc.close()


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


# ------------------------------------------------------------------------------------------------ regressions
# Answers this suite once found wrong; each must stay as the spec declares it.


def test_replications_while_the_log_is_unreachable_answer_503(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db", "--replication-url", f"nats://127.0.0.1:{free_port()}"], start=False)
    node.start(wait_ready=False)
    wait_for(lambda: _answers(node, "/healthz"), 30, "the node to serve HTTP")
    for method, path in (("GET", "/replications"), ("GET", "/replications/x"), ("DELETE", "/replications/x")):
        resp = node.request(method, path)
        assert resp.status == 503, f"{method} {path} -> {resp.status}: {resp.body!r}"


def test_min_seq_beyond_64_bits_is_refused_with_400(node_factory: NodeFactory) -> None:
    node = node_factory(args=["app.db", "--replication-timeout", "100ms"], token=TOKEN)
    call = Client(node, Conformance(load_spec()))
    call.error(
        "POST", "/query", {"sql": "SELECT 1"}, query=f"?min_seq={2**64}", expect=400, code="bad_request"
    )


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
