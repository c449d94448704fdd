"""The worker's webhooks (fan-out and sender) in a process of their own, started and watched by the worker.

Why: on the worker's event loop every round trip of a claim and every answer of a request waited
behind whatever the 16 projector jobs and the relay had ready before it; on a saturated machine a
process of its own shortened the claim stage's tail by ~40 % (docs/PERFORMANCE.md, session 6). A
thread with a loop of its own was tried and was worse: it shares the projectors' GIL, and an I/O
loop waiting up to a switch interval for it at each wake-up delivered less, not sooner. A process of
its own mostly sleeps, so when a socket is ready the kernel runs it at once, beside the projectors.

Nothing new to start: `intake worker` (and `intake dev`, which runs the worker in its process) starts
it, restarts it if it ends (the supervised loop `webhooks.process`), and stops it with itself. It
dies with the worker, a kill -9 included (PDEATHSIG on Linux; elsewhere its next report finds the
worker gone), and the next start resumes from what PostgreSQL holds (the cursor, the leases). Its
loops report their health to the worker every REPORT_S, so /readyz names them as before.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import multiprocessing.process
import os
import signal
from collections.abc import AsyncIterator
from typing import Any

import structlog

from service.loops import Healthy, LoopHealth
from service.settings import Settings
from service.webhook_child import main as child_main

STOP_TIMEOUT_S = 10.0
# Spawned, not forked: the worker runs an event loop and threads (the pool's executor), which a fork
# would copy mid-flight.
_CONTEXT = multiprocessing.get_context("spawn")
_log = structlog.get_logger("intake.worker")


class WebhookProcessEnded(Exception):
    """The webhooks' process ended while the worker runs; it is started again."""


class WebhookProcess:
    """Supervised as the worker's loop `webhooks.process`: runs the child until cancelled."""

    def __init__(self, settings: Settings, health: LoopHealth) -> None:
        self._settings = settings
        self._health = health

    async def run(self, healthy: Healthy) -> None:
        reader, writer = _CONTEXT.Pipe(duplex=False)
        process = _CONTEXT.Process(target=child_main, args=(self._settings, writer, os.getpid()),
                                   name="intake-webhooks", daemon=False)
        process.start()  # from the worker's main thread: PDEATHSIG follows the thread that started it
        writer.close()  # the child's end only: its exit is the reader's end of file
        _log.info("webhooks.process_started", pid=process.pid)
        try:
            async for report in _reports(reader):
                for name, state in report.items():
                    self._health.mirror(name, state)
                healthy()
            raise WebhookProcessEnded(f"exit code {process.exitcode}")
        finally:
            reader.close()
            await _stopped(process)


async def _reports(reader: multiprocessing.connection.Connection) -> AsyncIterator[dict[str, dict[str, Any]]]:
    """The child's health reports as they come, until it exits (its end of the pipe closes)."""
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    loop.add_reader(reader.fileno(), readable.set)
    try:
        while True:
            await readable.wait()
            readable.clear()
            while reader.poll():
                try:
                    report = reader.recv()
                except EOFError:
                    return
                yield report
    finally:
        loop.remove_reader(reader.fileno())


async def _stopped(process: multiprocessing.process.BaseProcess) -> None:
    """SIGTERM (it stops its loops and closes its pool), then SIGKILL if it has not ended in time."""
    if process.is_alive():
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGTERM)
    await asyncio.to_thread(process.join, STOP_TIMEOUT_S)
    if process.is_alive():
        process.kill()
        await asyncio.to_thread(process.join, STOP_TIMEOUT_S)
