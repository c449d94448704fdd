"""The HTTP guard: the request's bearer key must hold a scope on the business in the path.

Keys themselves (hashing, lookup, cache, who may do what) live in service/keys.py.
"""

from __future__ import annotations

from collections.abc import Callable

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from service.http.problems import Forbidden
from service.keys import SCOPES, ApiKeys


def requires(scope: str) -> Callable[[ASGIConnection, BaseRouteHandler], object]:
    """A guard: the request's API key must hold `scope` on the business in the path."""
    assert scope in SCOPES, scope

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        keys: ApiKeys = connection.app.state.api_keys
        principal = await keys.authenticate(connection.headers.get("authorization"))
        slug = connection.path_params.get("slug")
        if slug is None:  # routes outside any business are for admin keys only
            if not principal.is_admin:
                raise Forbidden("This API key may not do that.")
            connection.state.principal = principal
            return
        connection.state.tenant = await keys.authorize(principal, slug, scope)

    return guard
