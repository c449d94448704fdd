"""Query and path parameters of the read API: strict parsing, 400 naming the parameter (never its value).

Cursors are opaque to clients: a kind tag (so one list's cursor is not taken by
another) and the last row's sort key, base64url without padding.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable

from litestar import Request

from events.replay import BIGINT_MAX  # positions are bigint: larger would be a driver error, not a 400
from projections.queries import Key
from service.http.problems import InvalidParameter, NotFound

DEFAULT_LIMIT, MAX_LIMIT = 20, 100
STATUSES = frozenset({"pending", "approved", "rejected"})
ID = re.compile(r"[\x21-\x7e]{1,128}")  # like the ids of request bodies (service/http/schemas.py)


def integer(request: Request, name: str, *, low: int, high: int = BIGINT_MAX) -> int | None:
    """An optional integer parameter from `low` to `high`, in ASCII digits only (`str.isdigit`
    alone takes '²' and fullwidth digits)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    # The length first: int() of a 5,000-digit text raises (Python's 4,300-digit limit), a 500.
    if len(raw) > 19 or not (raw.isascii() and raw.isdigit()) or not low <= int(raw) <= high:
        raise InvalidParameter(f"'{name}' must be an integer from {low} to {high}.")
    return int(raw)


def text(request: Request, name: str, pattern: re.Pattern[str]) -> str | None:
    """An optional text parameter that must match `pattern` (checked before it reaches SQL:
    PostgreSQL cannot even receive a NUL)."""
    raw = request.query_params.get(name)
    if raw is not None and not pattern.fullmatch(raw):
        raise InvalidParameter(f"'{name}' is not valid here.")
    return raw


def limit(request: Request) -> int:
    """`limit`: default 20, clamped to 100."""
    found = integer(request, "limit", low=1)
    return DEFAULT_LIMIT if found is None else min(found, MAX_LIMIT)


def status(request: Request, default: str | None = None) -> str | None:
    """`status`: one of the consultation statuses."""
    found = request.query_params.get("status", default)
    if found is not None and found not in STATUSES:
        raise InvalidParameter("'status' must be one of pending, approved, rejected.")
    return found


def uuid_or_404(request: Request, name: str, what: str) -> uuid.UUID:
    """A path id; one that is not a UUID names nothing, so it is not found rather than malformed."""
    try:
        return uuid.UUID(request.path_params[name])
    except ValueError:
        raise NotFound(f"No such {what} for this business.") from None


def encode_cursor(kind: str, key: Key) -> str:
    """The opaque cursor for a page that starts after `key`."""
    text = ":".join((kind, *map(str, key)))
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


def cursor(request: Request, kind: str, parse: Callable[[list[str]], Key], first: Key) -> Key:
    """The sort key after which the requested page starts (`first` without a cursor)."""
    raw = request.query_params.get("cursor")
    if raw is None:
        return first
    try:
        tag, *key = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode().split(":")
        if tag != kind:
            raise ValueError(tag)
        return parse(key)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidParameter("'cursor' is not a cursor this list returned.") from None


def position_key(key: list[str]) -> Key:
    """A (position, row id) sort key."""
    position, row_id = key  # ValueError unless exactly two parts
    if not (position.isascii() and position.isdigit()) or int(position) > BIGINT_MAX:
        raise ValueError("position")
    return int(position), uuid.UUID(row_id)


def patient_key(key: list[str]) -> Key:
    """A (patient id,) sort key."""
    (patient_id,) = key
    return (uuid.UUID(patient_id),)
