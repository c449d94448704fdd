"""guarded_post runs the route's guards on the handler itself, not on a fresh copy per request."""

from __future__ import annotations

from litestar import Litestar
from litestar.testing import TestClient

from service.http.auth import guarded_post


def test_every_request_hands_the_guard_the_same_handler_object():
    seen = []

    async def guard(connection, handler) -> None:
        seen.append(handler)

    @guarded_post("/x", guards=[guard], status_code=200)
    async def route() -> None:
        return None

    with TestClient(Litestar([route], openapi_config=None)) as client:
        assert [client.post("/x").status_code for _ in range(3)] == [200, 200, 200]
    assert len(seen) == 3 and seen[0] is seen[1] is seen[2]


def test_a_guard_that_refuses_stops_the_request():
    async def refuse(connection, handler) -> None:
        from litestar.exceptions import NotAuthorizedException
        raise NotAuthorizedException()

    @guarded_post("/x", guards=[refuse], status_code=200)
    async def route() -> None:
        raise AssertionError("the handler ran past a refusing guard")

    with TestClient(Litestar([route], openapi_config=None)) as client:
        assert client.post("/x").status_code == 401
