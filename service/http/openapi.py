"""What the served OpenAPI document says about what the controllers parse themselves.

Controllers read their bodies, headers and query values by hand, so that every error is ours
(problem+json naming the field, never echoing it). Litestar cannot see those, so each route
names them here: request bodies as the msgspec Structs' JSON Schema, headers and query values
as parameters, and the problem+json answers. Clients, docs/API.md's test and the schemathesis
run in `make test` read the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
from litestar.openapi.spec import Operation

from service.http.params import BIGINT_MAX, DEFAULT_LIMIT, MAX_LIMIT, STATUSES

PROBLEM = {
    "description": "A problem (RFC 9457): the failing fields are named, never their values.",
    "content": {"application/problem+json": {"schema": {
        "type": "object", "required": ["type", "title", "status"],
        "properties": {"type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
                       "detail": {"type": "string"}, "instance": {"type": "string"},
                       "errors": {"type": "array", "items": {"type": "object", "properties": {
                           "field": {"type": "string"}, "message": {"type": "string"}}}}}}}},
}
_POSITION = {"type": "integer", "minimum": 0, "maximum": BIGINT_MAX}


def json_schema(struct: type[msgspec.Struct]) -> dict[str, Any]:
    """A Struct's JSON Schema, self-contained, in JSON Schema's regex dialect (ECMAScript `$` is
    Python's `\\Z`: the end of the text, newline or not)."""
    schema = msgspec.json.schema(struct)
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {key: inline(value) if key != "pattern" else value.replace("\\Z", "$")
                    for key, value in node.items()}
        return [inline(item) for item in node] if isinstance(node, list) else node

    return inline(schema)


def query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    """An optional query parameter."""
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": True,
                   "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                   "description": "The same key with the same body replays the first answer, forever."}
LIMIT = query("limit", {"type": "integer", "minimum": 1, "maximum": BIGINT_MAX},
              f"Page size: default {DEFAULT_LIMIT}, clamped to {MAX_LIMIT}.")
CURSOR = query("cursor", {"type": "string"}, "The `next_cursor` of the previous page of this list.")
MIN_POSITION = query("min_position", _POSITION, "Wait (≤ 2 s) until the read model has applied the log up to here.")
STATUS = query("status", {"type": "string", "enum": sorted(STATUSES)}, "Only consultations in this status.")
CUSTOMER_ID = query("customer_id", {"type": "string", "pattern": "^[\\x21-\\x7e]{1,128}$"}, "Only this customer's.")
AFTER = query("after", _POSITION, "Events after this position (0: from the start); follow `next_after`.")


def documented(*, body: type[msgspec.Struct] | None = None,
               parameters: tuple[dict[str, Any], ...] = ()) -> type[Operation]:
    """An `operation_class` for a route: Litestar's operation plus what the controller parses."""

    @dataclass
    class DocumentedOperation(Operation):
        # The spec's own classes would rename keys ("customer_id" → "customerId"): added as they are.
        def to_schema(self) -> dict[str, Any]:
            result = super().to_schema()
            if body is not None:
                result["requestBody"] = {"required": True,
                                         "content": {"application/json": {"schema": json_schema(body)}}}
            result["parameters"] = [*result.get("parameters", []), *parameters]
            result.setdefault("responses", {}).update({"4XX": PROBLEM, "429": {
                **PROBLEM, "description": "Rate limited: retry after `Retry-After` seconds."}, "503": {
                **PROBLEM, "description": "A dependency is down: retry after `Retry-After` seconds "
                                          "(with the same Idempotency-Key for a write)."}})
            return result

    return DocumentedOperation
