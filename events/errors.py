"""Errors of the event-store adapter; driver errors are translated here, once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg


class StoreUnavailable(Exception):
    """The event store cannot be reached right now; nothing was written by this attempt."""


class AppendConflict(Exception):
    """The stream moved past the expected version, or the idempotency key is already taken."""


class UnknownPosition(Exception):
    """No event has that position."""


# Failures of the connection or the server, as opposed to bugs in a query:
# these become StoreUnavailable (HTTP 503) and clear when the database returns.
_UNAVAILABLE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,  # class 08
    asyncpg.exceptions.OperatorInterventionError,  # class 57: shutdown, cannot connect now, query canceled
    asyncpg.exceptions.InsufficientResourcesError,  # class 53: too many connections, disk full
    asyncpg.ConnectionDoesNotExistError,
)


def is_outage(error: BaseException) -> bool:
    """Whether a driver error means the database is unreachable (rather than a query being wrong)."""
    return isinstance(error, _UNAVAILABLE)


@contextlib.contextmanager
def translating_driver_errors() -> Iterator[None]:
    """Turn connection-level driver failures into StoreUnavailable."""
    try:
        yield
    except _UNAVAILABLE as error:
        raise StoreUnavailable(StoreUnavailable.__doc__) from error
