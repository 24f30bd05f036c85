"""The ``/docs`` page, rendered from the OpenAPI spec (placeholder until the renderer lands)."""

from __future__ import annotations

import html


def render_docs(spec_yaml: str) -> str:
    return f"<!doctype html><title>sqlite-ha API</title><pre>{html.escape(spec_yaml)}</pre>"
