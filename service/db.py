"""The PostgreSQL pool: every wait bounded, every statement time-limited."""

from __future__ import annotations

import asyncio

import asyncpg

from service.settings import Settings


async def create_pool(settings: Settings, *, application_name: str, min_size: int | None = None,
                      session_state: bool = True, keep_idle: bool = False) -> asyncpg.Pool:
    """A pool that starts even while the database is down (min_size 0) and reconnects by itself.

    `session_state=False` promises that no user of the pool changes a session outside a transaction
    (no LISTEN, SET, session advisory lock or cursor held open): a released connection is then not
    sent asyncpg's reset query (UNLISTEN *, RESET ALL, …), a round trip per acquire with nothing to
    undo. An open transaction is still rolled back and listeners dropped (asyncpg does that first)."""
    return await asyncpg.create_pool(
        settings.require_database_url(),
        reset=None if session_state else _nothing_to_undo,
        min_size=settings.db_pool_min if min_size is None else min_size,
        max_size=settings.db_pool_max,
        timeout=settings.db_connect_timeout_ms / 1000,
        # keep_idle: connections opened stay open (up to max_size) instead of closing after 5 idle
        # minutes, so a pool warmed by `warm` does not shrink back and grow again under load.
        max_inactive_connection_lifetime=0 if keep_idle else 300.0,
        # The client-side limit is a backstop a little above the server-side one.
        command_timeout=settings.db_statement_timeout_ms / 1000 + 1,
        server_settings={
            "application_name": application_name,
            "statement_timeout": str(settings.db_statement_timeout_ms),
            # A stuck transaction would hold back every global reader's horizon.
            "idle_in_transaction_session_timeout": str(settings.db_statement_timeout_ms * 2),
            "jit": "off",  # short OLTP statements: JIT compilation only adds latency
        },
    )


async def _nothing_to_undo(_: asyncpg.Connection) -> None:
    return None


async def warm(pool: asyncpg.Pool, connections: int) -> None:
    """Open `connections` connections in the background of a pool made with min_size 0 (so it starts
    while the database is down): otherwise the pool grows only when requests already queue, and each
    request handed a new connection waits for its start-up and asyncpg's type introspection, the
    one-moment stalls of the API's p99 during a rebuild (docs/PERFORMANCE.md, session 6). Retried
    until the database answers; idle connections then stay (create_pool's keep_idle)."""
    while True:
        held: list[asyncpg.Connection] = []
        try:
            for _ in range(connections):
                held.append(await pool.acquire())
            return
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            await asyncio.sleep(1.0)
        finally:
            for conn in held:
                await pool.release(conn)
