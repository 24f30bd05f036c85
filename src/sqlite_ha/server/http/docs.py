"""The ``/docs`` page: the OpenAPI spec rendered as one self-contained HTML page.

No JavaScript and nothing fetched from elsewhere (a node may have no internet access): the page is plain HTML
with a small inline stylesheet. Every piece of text from the spec is escaped; descriptions get a tiny subset
of Markdown (paragraphs, ``-`` lists, ```code``` and ``**bold**``).
"""

from __future__ import annotations

import functools
import html
import json
import re
from typing import Any

import yaml

METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

_CSS = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2330;background:#fff;
margin:0 auto;max-width:64rem;padding:1rem 1.5rem 4rem}
h1{margin-bottom:.2rem}h2{margin-top:2.5rem;border-bottom:2px solid #e3e6ee;padding-bottom:.3rem}
h3{margin:0;font-size:1.05rem;display:flex;gap:.6rem;align-items:baseline;flex-wrap:wrap}
h4{margin:1.1rem 0 .4rem;font-size:.95rem;color:#3b4456}
code,pre{font:13px/1.45 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
code{background:#f1f3f8;padding:0 .25rem;border-radius:3px}
pre{background:#f6f8fb;border:1px solid #e3e6ee;border-radius:6px;padding:.6rem .8rem;overflow-x:auto}
pre code{background:none;padding:0}
.op{border:1px solid #e3e6ee;border-radius:8px;padding:1rem 1.2rem;margin:1.2rem 0}
.method{font:bold 12px/1 ui-monospace,monospace;color:#fff;padding:.35rem .5rem;border-radius:4px;
text-transform:uppercase;min-width:3.6rem;text-align:center}
.get{background:#2b7bd6}.post{background:#1f9d55}.delete{background:#d64545}.put,.patch{background:#c27c0e}
.path{font-size:1.05rem}.summary{color:#56607a;font-weight:normal}
.muted{color:#6b7488}.lock{font-size:.8rem;color:#8a5a00;background:#fff4d6;border-radius:3px;padding:0 .3rem}
.open{font-size:.8rem;color:#1f6f3f;background:#e2f6e9;border-radius:3px;padding:0 .3rem}
table{border-collapse:collapse;width:100%;margin:.3rem 0}
th,td{text-align:left;vertical-align:top;border-bottom:1px solid #eceff5;padding:.35rem .5rem}
th{font-size:.85rem;color:#56607a}
.status{font-weight:bold}.s2{color:#1f9d55}.s4{color:#c27c0e}.s5{color:#d64545}
nav ul{columns:2;padding-left:1.2rem}nav li{margin:.1rem 0}
a{color:#2b61b6;text-decoration:none}a:hover{text-decoration:underline}
details{margin:.4rem 0}summary{cursor:pointer;color:#3b4456}
"""


@functools.lru_cache(maxsize=4)
def render_docs(spec_yaml: str) -> str:
    """Render the spec text as an HTML page; cached, since the spec only changes with the code."""
    spec = yaml.safe_load(spec_yaml)
    if not isinstance(spec, dict):
        raise ValueError("the OpenAPI document is not a mapping")
    return _Renderer(spec).page()


class _Renderer:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    # ------------------------------------------------------------------------------------ helpers
    def resolve(self, node: Any) -> Any:
        """Follow local ``$ref`` pointers (``#/components/...``) until a real object."""
        seen = 0
        while isinstance(node, dict) and isinstance(node.get("$ref"), str) and seen < 20:
            node = self._pointer(node["$ref"])
            seen += 1
        return node

    def _pointer(self, ref: str) -> Any:
        if not ref.startswith("#/"):
            return {}
        node: Any = self.spec
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            node = node.get(part, {}) if isinstance(node, dict) else {}
        return node

    def operations(self) -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
        ops = []
        for path, item in (self.spec.get("paths") or {}).items():
            if not isinstance(item, dict):
                continue
            for method in METHODS:
                op = item.get(method)
                if isinstance(op, dict):
                    ops.append((str(path), method, op, item))
        return ops

    @staticmethod
    def anchor(method: str, path: str) -> str:
        return "op-" + method + "-" + (re.sub(r"[^A-Za-z0-9]+", "-", path).strip("-") or "root")

    # ------------------------------------------------------------------------------------ page
    def page(self) -> str:
        info = self.spec.get("info") or {}
        title = str(info.get("title") or "API")
        ops = self.operations()
        out = [
            "<!doctype html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{_e(title)}</h1>",
            f'<p class="muted">Version {_e(info.get("version", ""))}'
            f' · OpenAPI {_e(self.spec.get("openapi", ""))} · <a href="openapi.yaml">openapi.yaml</a></p>',
            _markdown(info.get("description")),
            self.servers(),
            self.contents(ops),
            self.security(),
        ]
        tags = [t for t in self.spec.get("tags") or [] if isinstance(t, dict)]
        tag_names = [str(t.get("name")) for t in tags]
        untagged = [o for o in ops if not set(map(str, o[2].get("tags") or [])) & set(tag_names)]
        for tag in tags:
            name = str(tag.get("name"))
            members = [o for o in ops if name in map(str, o[2].get("tags") or [])]
            if not members:
                continue
            out.append(f'<h2 id="tag-{_e(_slug(name))}">{_e(name.capitalize())}</h2>')
            out.append(_markdown(tag.get("description")))
            out.extend(self.operation(*o) for o in members)
        if untagged:
            out.append("<h2>Other routes</h2>")
            out.extend(self.operation(*o) for o in untagged)
        out.append(self.schemas())
        out.append("</body></html>")
        return "\n".join(p for p in out if p)

    def servers(self) -> str:
        servers = [s for s in self.spec.get("servers") or [] if isinstance(s, dict)]
        if not servers:
            return ""
        items = "".join(
            f"<li><code>{_e(s.get('url', ''))}</code> {_inline(s.get('description', ''))}</li>"
            for s in servers
        )
        return f"<h4>Servers</h4><ul>{items}</ul>"

    def contents(self, ops: list[tuple[str, str, dict[str, Any], dict[str, Any]]]) -> str:
        items = "".join(
            f'<li><a href="#{self.anchor(m, p)}"><b>{_e(m.upper())}</b> <code>{_e(p)}</code></a>'
            f' <span class="muted">{_e(op.get("summary", ""))}</span></li>'
            for p, m, op, _ in ops
        )
        return f"<nav><h2>Routes</h2><ul>{items}</ul></nav>"

    def security(self) -> str:
        schemes = (self.spec.get("components") or {}).get("securitySchemes") or {}
        if not schemes:
            return ""
        rows = []
        for name, scheme in schemes.items():
            s = self.resolve(scheme)
            if not isinstance(s, dict):
                continue
            kind = str(s.get("type", ""))
            if kind == "http":
                kind += f" ({s.get('scheme', '')})"
            elif kind == "apiKey":
                kind += (
                    f" (header {s.get('name', '')})" if s.get("in") == "header" else f" ({s.get('in', '')})"
                )
            rows.append(
                f"<tr><td><code>{_e(name)}</code></td><td>{_e(kind)}</td>"
                f"<td>{_markdown(s.get('description'))}</td></tr>"
            )
        required = self.spec.get("security") or []
        note = (
            'Every route requires one of these schemes unless it is marked <span class="open">open</span>.'
            if required
            else 'Routes marked <span class="lock">token</span> require one of these schemes.'
        )
        return (
            "<h2>Authentication</h2>"
            + f"<p>{note}</p>"
            + "<table><tr><th>Scheme</th><th>Type</th><th>Description</th></tr>"
            + "".join(rows)
            + "</table>"
        )

    # ------------------------------------------------------------------------------------ operations
    def operation(self, path: str, method: str, op: dict[str, Any], item: dict[str, Any]) -> str:
        security = op.get("security", self.spec.get("security") or [])
        badge = '<span class="lock">token</span>' if security else '<span class="open">open</span>'
        out = [
            f'<section class="op" id="{self.anchor(method, path)}">',
            f'<h3><span class="method {_e(method)}">{_e(method.upper())}</span>'
            f'<code class="path">{_e(path)}</code> {badge}'
            f'<span class="summary">{_e(op.get("summary", ""))}</span></h3>',
            _markdown(op.get("description")),
            self.parameters([*(item.get("parameters") or []), *(op.get("parameters") or [])]),
            self.request_body(op.get("requestBody")),
            self.responses(op.get("responses") or {}),
            "</section>",
        ]
        return "\n".join(p for p in out if p)

    def parameters(self, params: list[Any]) -> str:
        rows = []
        for p in params:
            p = self.resolve(p)
            if not isinstance(p, dict):
                continue
            req = "required" if p.get("required") else "optional"
            example = f"<br>Example: <code>{_e(p['example'])}</code>" if "example" in p else ""
            rows.append(
                f"<tr><td><code>{_e(p.get('name', ''))}</code></td><td>{_e(p.get('in', ''))}</td>"
                f"<td>{_e(self.type_of(p.get('schema')))}</td><td>{req}</td>"
                f"<td>{_markdown(p.get('description'))}{example}</td></tr>"
            )
        if not rows:
            return ""
        return (
            "<h4>Parameters</h4><table><tr><th>Name</th><th>In</th><th>Type</th><th></th>"
            "<th>Description</th></tr>" + "".join(rows) + "</table>"
        )

    def request_body(self, body: Any) -> str:
        body = self.resolve(body)
        if not isinstance(body, dict):
            return ""
        out = [
            "<h4>Request body" + (" (required)" if body.get("required") else "") + "</h4>",
            _markdown(body.get("description")),
        ]
        for ctype, media in (body.get("content") or {}).items():
            out.append(self.media(str(ctype), media))
        return "\n".join(p for p in out if p)

    def responses(self, responses: dict[str, Any]) -> str:
        out = ["<h4>Responses</h4>"]
        for status, resp in responses.items():
            r = self.resolve(resp)
            if not isinstance(r, dict):
                continue
            cls = f"s{str(status)[:1]}"
            out.append(
                f'<div><span class="status {_e(cls)}">{_e(status)}</span> '
                f"{_markdown(r.get('description'), inline=True)}"
            )
            headers = r.get("headers") or {}
            if headers:
                rows = "".join(
                    f"<tr><td><code>{_e(name)}</code></td><td>{_markdown(self.resolve(h).get('description'))}"
                    + (
                        f"<br>Example: <code>{_e(self.resolve(h)['example'])}</code>"
                        if "example" in self.resolve(h)
                        else ""
                    )
                    + "</td></tr>"
                    for name, h in headers.items()
                    if isinstance(self.resolve(h), dict)
                )
                out.append(f"<table><tr><th>Header</th><th>Description</th></tr>{rows}</table>")
            for ctype, media in (r.get("content") or {}).items():
                out.append(self.media(str(ctype), media))
            out.append("</div>")
        return "\n".join(out)

    def media(self, ctype: str, media: Any) -> str:
        if not isinstance(media, dict):
            return ""
        schema = media.get("schema")
        out = [f'<p class="muted"><code>{_e(ctype)}</code> · {self.type_link(schema)}</p>']
        examples: list[tuple[str, Any]] = []
        if "example" in media:
            examples.append(("Example", media["example"]))
        for name, ex in (media.get("examples") or {}).items():
            ex = self.resolve(ex)
            if isinstance(ex, dict) and "value" in ex:
                examples.append((str(ex.get("summary") or name), ex["value"]))
        for i, (label, value) in enumerate(examples):
            pre = f"<pre><code>{_e(_show(value))}</code></pre>"
            if i == 0:
                out.append(f'<div class="muted">{_e(label)}</div>{pre}')
            else:
                out.append(f"<details><summary>{_e(label)}</summary>{pre}</details>")
        return "\n".join(out)

    # ------------------------------------------------------------------------------------ schemas
    def type_of(self, schema: Any) -> str:
        """A short type: ``string``, ``array of Value``, ``Result | ResultList``, ``string | null``."""
        if not isinstance(schema, dict):
            return "any"
        ref = schema.get("$ref")
        if isinstance(ref, str):
            return ref.rsplit("/", 1)[-1]
        for key, sep in (("oneOf", " | "), ("anyOf", " | "), ("allOf", " & ")):
            if key in schema:
                return sep.join(self.type_of(s) for s in schema[key])
        kind = str(schema.get("type", "any"))
        if "enum" in schema:
            kind = " | ".join("null" if v is None else json.dumps(v) for v in schema["enum"])
        elif kind == "array":
            kind = f"array of {self.type_of(schema.get('items'))}"
        elif kind == "object" and isinstance(schema.get("additionalProperties"), dict):
            kind = f"object of {self.type_of(schema['additionalProperties'])}"
        elif "format" in schema:
            kind += f" ({schema['format']})"
        if schema.get("nullable") and "enum" not in schema:
            kind += " | null"
        return kind

    def type_link(self, schema: Any) -> str:
        """``type_of`` with links on the component names."""
        text = _e(self.type_of(schema))
        names = set((self.spec.get("components") or {}).get("schemas") or {})
        return re.sub(
            r"\b[A-Z][A-Za-z0-9]*\b",
            lambda m: (
                f'<a href="#schema-{m.group(0)}">{m.group(0)}</a>' if m.group(0) in names else m.group(0)
            ),
            text,
        )

    def schemas(self) -> str:
        comps = (self.spec.get("components") or {}).get("schemas") or {}
        if not comps:
            return ""
        out = ["<h2>Schemas</h2>"]
        for name, schema in comps.items():
            if not isinstance(schema, dict):
                continue
            out.append(
                f'<section class="op" id="schema-{_e(name)}"><h3><code>{_e(name)}</code>'
                f'<span class="summary">{self.type_link(schema)}</span></h3>'
            )
            out.append(_markdown(schema.get("description")))
            out.append(self.properties(schema))
            if "example" in schema:
                out.append(
                    f'<div class="muted">Example</div><pre><code>{_e(_show(schema["example"]))}</code></pre>'
                )
            out.append("</section>")
        return "\n".join(p for p in out if p)

    def properties(self, schema: dict[str, Any]) -> str:
        rows = []
        required = set(schema.get("required") or [])
        for key in ("oneOf", "anyOf"):
            for sub in schema.get(key) or []:
                if isinstance(sub, dict) and "$ref" not in sub:
                    rows.append(
                        f"<tr><td><i>one of</i></td><td>{self.type_link(sub)}</td><td></td>"
                        f"<td>{_markdown(sub.get('description'))}</td></tr>"
                    )
        for prop, sub in (schema.get("properties") or {}).items():
            if not isinstance(sub, dict):
                continue
            desc = _markdown(sub.get("description"))
            nested = self.properties(sub) if sub.get("type") == "object" and sub.get("properties") else ""
            rows.append(
                f"<tr><td><code>{_e(prop)}</code></td><td>{self.type_link(sub)}</td>"
                f"<td>{'required' if prop in required else 'optional'}</td><td>{desc}{nested}</td></tr>"
            )
        if not rows:
            return ""
        return (
            "<table><tr><th>Field</th><th>Type</th><th></th><th>Description</th></tr>"
            + "".join(rows)
            + "</table>"
        )


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def _show(value: Any) -> str:
    return value if isinstance(value, str) else _json(value, 0)


def _json(value: Any, indent: int, used: int = 0) -> str:
    """JSON with a value on one line when it fits (``used`` = width taken before it), so rows read as rows."""
    flat = json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    if not isinstance(value, dict | list) or not value or indent + used + len(flat) <= 80:
        return flat
    pad = " " * (indent + 2)
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            key = json.dumps(str(k), ensure_ascii=False) + ": "
            items.append(pad + key + _json(v, indent + 2, len(key)))
        return "{\n" + ",\n".join(items) + "\n" + " " * indent + "}"
    items = [pad + _json(v, indent + 2) for v in value]
    return "[\n" + ",\n".join(items) + "\n" + " " * indent + "]"


_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")


def _inline(text: Any) -> str:
    """Escape, then turn `code` and **bold** into tags (the markers survive escaping unchanged)."""
    parts = _CODE.split(str(text))
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(f"<code>{_e(part)}</code>")
        else:
            out.append(_BOLD.sub(lambda m: f"<b>{m.group(1)}</b>", _e(part)))
    return "".join(out)


def _markdown(text: Any, *, inline: bool = False) -> str:
    """Paragraphs and ``-`` lists; lines of a list item that are indented continue it."""
    if not text:
        return ""
    blocks = re.split(r"\n\s*\n", str(text).strip())
    if inline and len(blocks) == 1 and not blocks[0].lstrip().startswith("- "):
        return _inline(" ".join(blocks[0].split()))
    out = []
    for block in blocks:
        lines = block.splitlines()
        if lines and lines[0].lstrip().startswith("- "):
            items: list[str] = []
            for line in lines:
                if line.lstrip().startswith("- "):
                    items.append(line.lstrip()[2:])
                elif items:
                    items[-1] += " " + line.strip()
            out.append("<ul>" + "".join(f"<li>{_inline(' '.join(i.split()))}</li>" for i in items) + "</ul>")
        else:
            out.append(f"<p>{_inline(' '.join(block.split()))}</p>")
    return "".join(out)
