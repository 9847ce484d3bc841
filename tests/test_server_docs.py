"""``GET /docs``: the API reference as plain HTML that reads offline (no script, nothing fetched
from elsewhere), generated from the same OpenAPI document as ``/openapi.json``."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient  # noqa: E402

from uner.server import ModelHost, create_app  # noqa: E402


def _never_loaded():
    raise AssertionError("the docs page must not need the model")


@pytest.fixture()
def client():
    return TestClient(create_app(ModelHost(load=_never_loaded, describe=lambda extractor: {})))


def test_the_docs_page_describes_every_endpoint_and_the_request_body(client):
    page = client.get("/docs")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for path in client.get("/openapi.json").json()["paths"]:
        assert f"<code>{path}</code>" in page.text
    assert "<code>labels</code> (required)" in page.text and "array of string" in page.text
    assert "minimum 1" in page.text and "one of none, json, grounded" in page.text  # bounds inside anyOf
    assert "<td>503</td>" in page.text and "<td>413</td>" in page.text  # the errors a client must handle


def test_the_docs_page_loads_nothing_from_elsewhere(client):
    page = client.get("/docs").text
    assert "<script" not in page and "@import" not in page
    links = re.findall(r"""(?:href|src)\s*=\s*['"]([^'"]*)['"]""", page)
    assert links and all("//" not in link for link in links), links
    assert client.get("/redoc").status_code == 404  # FastAPI's CDN pages are off
