"""Headers read straight from the ASGI scope say what litestar's Headers said."""

from __future__ import annotations

from litestar.connection import ASGIConnection

from service.http.scope import header


def _connection(headers: list[tuple[bytes, bytes]]) -> ASGIConnection:
    return ASGIConnection({"type": "http", "headers": headers, "state": {}})  # type: ignore[arg-type]


def test_a_header_reads_as_litestar_reads_it_first_value_latin_1_or_none():
    connection = _connection([(b"idempotency-key", b"k\xe9-1"), (b"idempotency-key", b"second"), (b"x-empty", b"")])
    assert header(connection, b"idempotency-key") == connection.headers.get("idempotency-key") == "k\u00e9-1"
    assert header(connection, b"x-empty") == "" and header(connection, b"authorization") is None
