"""Faults injected while a load runs: real SIGKILLs of workers and of Redis, paced, and cut short
when the load ends (each loop is bounded by the load's own budget)."""

from __future__ import annotations

import asyncio
import contextlib

import redis.asyncio

from service.devstack import EmbeddedRedis
from tests.support.workers import WorkerProcess


async def set_within(event: asyncio.Event, timeout: float) -> bool:
    """Whether `event` is set within `timeout` seconds: the pacing of the faults, cut short by the end of the load."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    return event.is_set()


async def kill_workers_in_turn(workers: list[WorkerProcess], done: asyncio.Event, every_s: float) -> int:
    """SIGKILL one worker about every `every_s`, alternating, and start it again at once; returns the kills."""
    kills = 0
    while not await set_within(done, every_s):
        worker = workers[kills % len(workers)]
        await asyncio.to_thread(worker.kill)
        await asyncio.to_thread(worker.start)
        kills += 1
    return kills


async def wipe_redis_midway(server: EmbeddedRedis, halfway: asyncio.Event, done: asyncio.Event,
                            outage_s: float) -> int | None:
    """Once `halfway` is set, SIGKILL Redis, leave it down for `outage_s`, start it again empty.

    Returns how many jobs were queued when it died (all lost: Redis persists nothing), None if the load ended first.
    """
    await halfway.wait()
    if done.is_set():
        return None
    client = redis.asyncio.Redis.from_url(server.url())
    try:
        queued = await client.zcard("arq:queue")
    finally:
        await client.aclose()
    await asyncio.to_thread(server.kill)
    await set_within(done, outage_s)
    await asyncio.to_thread(server.start)
    return queued
