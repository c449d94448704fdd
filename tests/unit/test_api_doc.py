"""docs/API.md and the served OpenAPI document describe the same endpoints and fields."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from projections.secretbox import SecretBox
from service.http.app import create_app
from service.settings import Settings

API_DOC = Path(__file__).resolve().parents[2] / "docs" / "API.md"
_ENDPOINT = re.compile(r"`(GET|POST|PUT|PATCH|DELETE) (/[^`\s?]+)")
OPENAPI_PATH = "/schema/openapi.json"  # served by Litestar itself, not one of our routes


@pytest.fixture(scope="module")
def openapi() -> dict:
    # Building the app does no I/O (the lifespan opens the pool): the URL is never dialled.
    app = create_app(Settings(database_url="postgresql://nobody@127.0.0.1:1/none", secrets_key=SecretBox.generate()))
    return app._app.openapi_schema.to_schema()  # type: ignore[attr-defined]


def documented_endpoints(text: str) -> set[tuple[str, str]]:
    return {(method, path) for method, path in _ENDPOINT.findall(text)} - {("GET", OPENAPI_PATH)}


def test_every_served_endpoint_is_documented_and_every_documented_one_is_served(openapi):
    served = {(method.upper(), path) for path, operations in openapi["paths"].items() for method in operations}
    documented = documented_endpoints(API_DOC.read_text())
    assert served - documented == set(), "served but not in docs/API.md"
    assert documented - served == set(), "in docs/API.md but not served"


def test_every_response_field_of_the_served_schemas_is_named_in_the_doc(openapi):
    text = API_DOC.read_text()
    missing = [f"{schema}.{field}" for schema, body in openapi["components"]["schemas"].items()
               for field in body.get("properties", {}) if f'"{field}"' not in text]
    assert missing == []


def test_the_openapi_document_is_served_where_the_doc_says(openapi):
    assert f"`GET {OPENAPI_PATH}`" in API_DOC.read_text()
    assert openapi["info"]["title"] == "intake"


def test_the_parser_sees_endpoints_and_ignores_prose():
    text = "- `GET /v1/things/{id}` and `POST /v1/things` — `?limit=`; not `GET` alone"
    assert documented_endpoints(text) == {("GET", "/v1/things/{id}"), ("POST", "/v1/things")}
