"""A request's headers and the tenant its guard resolved, read straight from the ASGI scope.

Each `connection.state` builds a litestar State with its own lock, and `connection.headers` goes
through litestar's scope-state cache to a multi-dict of every header, for the three or four values
the write path reads (docs/PERFORMANCE.md, session 6). litestar's `Request.body()` still builds that
multi-dict once per request for its own content-length check.
"""

from __future__ import annotations

from litestar.connection import ASGIConnection

from service.keys import Tenant


def header(connection: ASGIConnection, name: bytes) -> str | None:
    """The first value of a request header, or None; `name` in lower case, as ASGI servers pass names."""
    for key, value in connection.scope["headers"]:
        if key == name:
            return value.decode("latin-1")  # what litestar's Headers decode them as
    return None


def tenant_of(connection: ASGIConnection) -> Tenant:
    """The business the route's guard authorized this request for (service/http/auth.py)."""
    return connection.scope["state"]["tenant"]  # type: ignore[no-any-return]


def set_tenant(connection: ASGIConnection, tenant: Tenant) -> None:
    """Record the authorized business (the dict `connection.state.tenant` reads too)."""
    connection.scope["state"]["tenant"] = tenant
