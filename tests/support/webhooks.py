"""Running the webhook loops in the test's event loop, with a compressed schedule."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg

from projections.deliveries import Sender
from projections.fanout import follow
from service.settings import Settings
from service.webhooks import delivery_config, secret_box
from tests.support.servers import ROOT

# Attempts 20 ms, 80 ms, 320 ms apart (± jitter), then dead-lettered at the fourth; loopback allowed.
COMPRESSED = {"webhook_retry_base_ms": 20, "webhook_max_attempts": 4, "webhook_allowed_networks": "127.0.0.0/8"}


async def business_id(db: asyncpg.Connection, slug: str) -> int:
    return await db.fetchval("SELECT id FROM businesses WHERE slug = $1", slug)


def compressed(settings: Settings, **overrides: object) -> Settings:
    """The settings with the compressed retry schedule and loopback endpoints allowed."""
    return dataclasses.replace(settings, **{**COMPRESSED, **overrides})


@contextlib.asynccontextmanager
async def delivering(settings: Settings) -> AsyncIterator[None]:
    """The fan-out and the sender, as the worker runs them (as the app role), until the block ends."""
    stop, fanned = asyncio.Event(), asyncio.Event()
    async with asyncpg.create_pool(settings.database_url, min_size=1, max_size=10) as pool:
        sender = Sender(pool, secret_box(settings), delivery_config(settings))
        tasks = [asyncio.create_task(follow(pool, stop, fanned)), asyncio.create_task(sender.run(stop, fanned))]
        try:
            yield
        finally:
            stop.set()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


async def intake_cli(settings: Settings, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`intake …` as an operator runs it (as the owner), off the event loop so the servers keep answering."""
    env = {**os.environ, "DATABASE_URL": settings.database_url or "", "OWNER_DATABASE_URL":
           settings.owner_database_url or "", "WEBHOOK_ALLOWED_NETWORKS": settings.webhook_allowed_networks,
           **(env or {})}
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "service.cli", *args], env=env,
                                   capture_output=True, text=True, timeout=60, cwd=ROOT)
