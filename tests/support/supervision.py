"""Watching a worker's loops from outside: its probe port, its log, and the outbox it drains."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx

POLL_S = 0.05


async def eventually(check: Callable[[], Any], within_s: float, what: str) -> Any:
    """Poll `check` (sync, or returning an awaitable) until it gives something truthy (returned),
    failing with `what` past the deadline."""
    deadline = time.monotonic() + within_s
    while not (result := await _value(check())):
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within_s:g}s: {what}")
        await asyncio.sleep(POLL_S)
    return result


async def _value(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


async def readiness(port: int) -> tuple[int, dict[str, Any]]:
    """The worker's /readyz: status code and body (503 and {} while nothing answers yet)."""
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            response = await client.get(f"http://127.0.0.1:{port}/readyz")
    except httpx.TransportError:
        return 503, {}
    return response.status_code, response.json()


def ready_when(port: int, expected: int, loop: str, state: str) -> Callable[[], Awaitable[dict[str, Any] | None]]:
    """A check for `eventually`: /readyz answers `expected` and reports `loop` in `state`; returns the body."""
    async def check() -> dict[str, Any] | None:
        status, body = await readiness(port)
        seen = body.get("loops", {}).get(loop, {}).get("state")
        return body if status == expected and seen == state else None
    return check


def outbox_empty(db: asyncpg.Connection) -> Callable[[], Awaitable[bool]]:
    """A check for `eventually`: every outbox row has been relayed (only the relay deletes them)."""
    async def check() -> bool:
        return await db.fetchval("SELECT count(*) FROM outbox") == 0
    return check


def log_lines(log: Path, event: str) -> list[dict[str, Any]]:
    """The JSON log lines of `log` whose event is `event`."""
    lines = []
    for raw in log.read_text(errors="replace").splitlines() if log.exists() else []:
        with contextlib.suppress(ValueError):
            line = json.loads(raw)
            if isinstance(line, dict) and line.get("event") == event:
                lines.append(line)
    return lines


# What PostgreSQL says when the relay deletes relayed rows; kept out of every log line, as row data would be.
REFUSAL = "outbox rows are not to be deleted now"


@contextlib.asynccontextmanager
async def outbox_refusing_deletes(db: asyncpg.Connection) -> AsyncIterator[None]:
    """A trigger that makes PostgreSQL refuse the relay's DELETE with a non-outage error (RaiseError)
    until it is dropped; appends (INSERTs into the outbox) keep working meanwhile."""
    await db.execute(f"""
        CREATE FUNCTION refuse_outbox_delete() RETURNS trigger LANGUAGE plpgsql
            AS $$ BEGIN RAISE EXCEPTION '{REFUSAL}'; END $$;
        CREATE TRIGGER refuse_outbox_delete BEFORE DELETE ON outbox
            FOR EACH ROW EXECUTE FUNCTION refuse_outbox_delete();""")
    try:
        yield
    finally:
        await db.execute("DROP TRIGGER refuse_outbox_delete ON outbox; DROP FUNCTION refuse_outbox_delete()")
