"""Errors of the event-store adapter; driver errors are translated here, once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import asyncpg


class StoreUnavailable(Exception):
    """The event store cannot be reached right now; retry, with the same idempotency key for a write."""


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


# asyncpg reports a connection it already knows to be dead with a plain InterfaceError, no
# subclass and no SQLSTATE: leaving a transaction on it (`Transaction.__aexit__`, e.g. after
# the server crashed during the transaction's statements or while it was held open), or calling
# a method on it (`Connection._check_open`, the protocol's state check). All three messages end
# with these words (asyncpg 0.32: connresource.py, connection.py, protocol.pyx), so the wording
# is the only signal there is. Other InterfaceErrors (a connection used after its release, a
# transaction entered twice, a bad argument) are bugs in our code and stay 500s.
_LOST_CONNECTION_WORDING = "connection is closed"


def is_outage(error: BaseException) -> bool:
    """Whether a driver error means the database is unreachable (rather than a query being wrong)."""
    return isinstance(error, _UNAVAILABLE) or _is_lost_connection(error)


def _is_lost_connection(error: BaseException) -> bool:
    # Exactly InterfaceError: its subclasses (DataError, ClientConfigurationError, ...) are about
    # our arguments or configuration, never about the connection.
    return type(error) is asyncpg.InterfaceError and str(error).endswith(_LOST_CONNECTION_WORDING)


@contextlib.contextmanager
def translating_driver_errors() -> Iterator[None]:
    """Turn connection-level driver failures into StoreUnavailable.

    Wrap the whole `async with pool.acquire() as conn, conn.transaction():` so that the
    exits of both (COMMIT, ROLLBACK, the release) are translated too.
    """
    try:
        yield
    except (*_UNAVAILABLE, asyncpg.InterfaceError) as error:
        if not is_outage(error):
            raise
        raise StoreUnavailable(StoreUnavailable.__doc__) from error


class KeyUnavailable(Exception):
    """The patient's data key this append encrypted with is not (or no longer) their live key."""
