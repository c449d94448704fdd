"""The worker's sealing loop: every INTAKE_SEAL_INTERVAL_S, a seal over what the log gained since
the last one (none when it did not grow). Several workers may run it: the seal's advisory lock
makes them take turns, and whoever comes second finds nothing new."""

from __future__ import annotations

import asyncio
import contextlib
import functools

import asyncpg
import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from events.sealing import seal
from service.loops import Healthy, LoopHealth, supervise
from service.seal_keys import signing_key
from service.settings import Settings

STALL_MARGIN_S = 60.0  # a seal of a large backlog may take a while beyond the interval
_log = structlog.get_logger("intake.worker")


def sealing_tasks(settings: Settings, pool: asyncpg.Pool, stop: asyncio.Event,
                  health: LoopHealth) -> list[asyncio.Task[None]]:
    """The supervised sealing loop, when a key is configured and the interval is not 0."""
    key = signing_key(settings)
    if key is None or settings.seal_interval_s <= 0:
        return []
    loop = functools.partial(_seal_forever, pool, key, settings.seal_interval_s, stop)
    return [asyncio.create_task(supervise("sealer", loop, stop, health,
                                          stall_after_s=2 * settings.seal_interval_s + STALL_MARGIN_S))]


async def _seal_forever(pool: asyncpg.Pool, key: Ed25519PrivateKey, interval_s: float, stop: asyncio.Event,
                        healthy: Healthy) -> None:
    while not stop.is_set():
        async with pool.acquire() as conn:
            made = await seal(conn, key)
        if made is not None:
            _log.info("events.sealed", seal=made.seal_no, tree_size=made.tree_size)
        healthy()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval_s)
