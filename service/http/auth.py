"""The HTTP guard: the request's bearer key must hold a scope on the business in the path.

Keys themselves (hashing, lookup, cache, who may do what) live in service/keys.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import HttpMethod
from litestar.connection import ASGIConnection
from litestar.handlers import HTTPRouteHandler
from litestar.handlers.base import BaseRouteHandler

from service.http.problems import Forbidden
from service.http.scope import header, set_tenant
from service.keys import SCOPES, ApiKeys, Principal
from service.ratelimit import RateLimiter

# Which budget a scope's routes draw on (service/ratelimit.py ROUTE_CLASSES).
ROUTE_CLASS = {"submissions:write": "submit", "consultations:decide": "decide", "consultations:read": "read",
               "audit:read": "read", "admin": "admin"}


def requires(scope: str) -> Callable[[ASGIConnection, BaseRouteHandler], object]:
    """A guard: the request's API key must hold `scope` on the business in the path."""
    assert scope in SCOPES, scope

    async def guard(connection: ASGIConnection, _: BaseRouteHandler) -> None:
        keys: ApiKeys = connection.app.state.api_keys
        principal = await keys.authenticate(header(connection, b"authorization"))
        slug = connection.path_params.get("slug")
        if slug is None:  # routes outside any business are for admin keys only
            if not principal.is_admin:
                raise Forbidden("This API key may not do that.")
            connection.state.principal = principal
        else:
            set_tenant(connection, await keys.authorize(principal, slug, scope))
        await _within_limits(connection, principal, ROUTE_CLASS[scope])

    return guard


async def _within_limits(connection: ASGIConnection, principal: Principal, route_class: str) -> None:
    """Draw on the key's budget and its business's (admin keys: their own only); RateLimited if over.
    The verdict's headers ride on the response (service/http/middleware.py adds them)."""
    limiter: RateLimiter = connection.app.state.rate_limiter
    verdict = await limiter.check(route_class, principal.key_id, principal.business_id,
                                  principal.business_rate_limits)
    if verdict is not None:
        connection.scope["state"]["ratelimit_headers"] = verdict.headers()


class _GuardedRoute(HTTPRouteHandler):
    """A route whose guards get the handler itself: litestar passes each guard `copy(handler)`, a
    shallow copy per guard per request (4 % of a submission's CPU in the bench's profile,
    docs/PERFORMANCE.md). Our guards never look at the handler, let alone change it."""

    async def authorize_connection(self, connection: ASGIConnection) -> None:
        for guard in self.resolve_guards():
            await guard(connection, self)


def guarded_post(path: str, **options: Any) -> _GuardedRoute:
    """litestar's `@post`, minus the per-request copies (see _GuardedRoute)."""
    return _GuardedRoute(path, http_method=HttpMethod.POST, **options)
