"""The API reference at ``GET /docs``, rendered from the OpenAPI document on the server: plain HTML,
no script and no CDN, so it reads on an offline machine (FastAPI's own ``/docs`` loads Swagger UI
from a CDN and stays blank there). ``/openapi.json`` keeps the machine-readable document."""

from __future__ import annotations

import json
import re
from html import escape

_STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h2 { border-top: 1px solid #ddd; padding-top: 1rem; }
.method { font: bold 13px monospace; padding: 2px 6px; border-radius: 3px; background: #e8eef8; }
pre { background: #f6f8fa; padding: .75rem; overflow-x: auto; font-size: 13px; }
td, th { text-align: left; padding: 2px 12px 2px 0; vertical-align: top; }
"""


def render_api_page(openapi: dict) -> str:
    """``openapi`` (an OpenAPI 3 document) as one self-contained HTML page.

    >>> page = render_api_page({"info": {"title": "t"}, "paths": {"/x": {"get": {"summary": "X"}}}})
    >>> "/x" in page and "<script" not in page
    True
    """
    info = openapi.get("info", {})
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>{escape(info.get('title', 'API'))}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{escape(info.get('title', 'API'))}</h1><p>{escape(info.get('description', ''))}</p>",
        "<p>Machine-readable: <a href='openapi.json'>openapi.json</a>.</p>",
    ]
    for path, operations in openapi.get("paths", {}).items():
        for method, operation in operations.items():
            parts += _operation(path, method, operation, openapi)
    parts.append("</body></html>")
    return "\n".join(parts)


def _operation(path: str, method: str, operation: dict, openapi: dict) -> list[str]:
    parts = [f"<h2><span class='method'>{escape(method.upper())}</span> <code>{escape(path)}</code></h2>"]
    text = operation.get("description") or operation.get("summary") or ""
    parts.append(f"<p>{_text(text)}</p>")
    body = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if body is not None:
        parts.append("<h3>Request body (JSON)</h3>" + _schema_table(_resolve(body, openapi), openapi))
    responses = operation.get("responses", {})
    if responses:
        rows = "".join(
            f"<tr><td>{escape(str(code))}</td><td>{_text(answer.get('description', ''))}</td></tr>"
            for code, answer in responses.items()
        )
        parts.append(f"<h3>Responses</h3><table>{rows}</table>")
    return parts


def _resolve(schema: dict, openapi: dict) -> dict:
    """``schema`` itself, or what its ``$ref`` (``#/components/schemas/Name``, ``#/$defs/Name``) names."""
    reference = schema.get("$ref")
    if reference is None:
        return schema
    node: dict = openapi
    for key in reference.lstrip("#/").split("/"):
        node = node.get(key, {})
    return node or schema


_BOUNDS = ("enum", "minimum", "maximum", "minItems", "maxItems", "maxLength")


def _bound(key: str, value) -> str:
    if key == "enum":
        return "one of " + ", ".join(map(str, value))
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{key} {value}"


def _text(text: str) -> str:
    """``text`` escaped, its ``code`` spans (docstring style) as <code>."""
    return re.sub(r"``(.+?)``", r"<code>\1</code>", escape(text))


def _type_name(schema: dict) -> str:
    """``string``, ``array of string``, ``null``..."""
    kind = str(schema.get("type", schema.get("title", "object")))
    if kind == "array" and "items" in schema:
        return f"array of {_type_name(schema['items'])}"
    return kind


def _schema_table(schema: dict, openapi: dict) -> str:
    properties = schema.get("properties")
    if not properties:
        return f"<pre>{escape(json.dumps(schema, indent=2))}</pre>"
    required = set(schema.get("required", []))
    rows = []
    for name, field in properties.items():
        options = [_resolve(option, openapi) for option in field.get("anyOf", [field])]
        kind = " | ".join(_type_name(option) for option in options)
        bounds = [_bound(key, option[key]) for option in options for key in _BOUNDS if key in option]
        note = "; ".join([field.get("description", ""), *bounds]).strip("; ")
        flag = " (required)" if name in required else ""
        rows.append(f"<tr><td><code>{escape(name)}</code>{flag}</td><td>{escape(kind)}</td><td>{_text(note)}</td></tr>")
    return "<table><tr><th>field</th><th>type</th><th>notes</th></tr>" + "".join(rows) + "</table>"
