"""The worker's webhooks (fan-out and sender) on an event loop of their own, in a thread of the worker.

Why: on the worker's loop, every round trip of a claim and every answer of a request waited behind
whatever the 16 projector jobs and the relay had ready before it; when the machine was saturated
that wait was most of the commit→delivery tail (the claim stage, docs/PERFORMANCE.md). On a loop of
its own a ready sender waits at most for the projectors' Python to reach a switch of the GIL.

Why a thread and not a process: nothing new to start, supervise or kill. `intake worker`, `intake dev`
and the tests run it as before; a kill -9 of the worker ends it too, and the next start resumes from
what PostgreSQL holds (the cursor, the leases), exactly as before. Its loops report to the worker's
LoopHealth under the same names (webhooks.fanout, webhooks.sender), so /readyz is unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading

import structlog
import uvloop

from projections.deliveries import Sender
from projections.fanout import follow
from projections.secretbox import SecretBox
from service.db import create_pool as create_db_pool
from service.loops import LoopHealth, log_crash, supervise
from service.settings import Settings
from service.webhooks import delivery_config

LOOPS = ("webhooks.fanout", "webhooks.sender")
JOIN_TIMEOUT_S = 10.0
POOL_CLOSE_TIMEOUT_S = 5.0
_log = structlog.get_logger("intake.worker")


class WebhookThread:
    """Fan-out and sender, supervised, on their own uvloop in a daemon thread, until `stop()`."""

    def __init__(self, settings: Settings, box: SecretBox, health: LoopHealth) -> None:
        self._settings, self._box, self._health = settings, box, health
        # Made here, run there: call_soon_threadsafe works from the first moment, running or not.
        self._loop = uvloop.new_event_loop()
        self._stop = asyncio.Event()  # both bind to the loop that first waits on them: the thread's
        self._appended = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="intake-webhooks", daemon=True)
        for name in LOOPS:
            # Registered from the caller's thread, before the loops run: the thread's supervisors then
            # only replace these entries, never add one while a probe iterates over them.
            health.watch(name)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        """New events were committed (the outbox notification): the fan-out looks now, not at its poll.
        Safe from any thread; a no-op once the thread has ended."""
        with contextlib.suppress(RuntimeError):  # the loop is closed: nothing left to wake
            self._loop.call_soon_threadsafe(self._appended.set)

    async def stop(self) -> None:
        """Stop the loops (what is in flight is cancelled, as on the worker's loop) and wait for the thread."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread.is_alive():
            await asyncio.to_thread(self._thread.join, JOIN_TIMEOUT_S)

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=lambda: self._loop) as runner:
                runner.run(self._main())
        # The thread's own supervisor: whatever ends it is logged (its loops then show as stalled in
        # /readyz); the loops inside are restarted by theirs.
        except Exception as error:
            log_crash("webhooks.thread", error)

    async def _main(self) -> None:
        # A pool of its own (a pool belongs to one loop); min_size 0: it opens only the three
        # connections the fan-out and the sender keep.
        pool = await create_db_pool(self._settings, application_name="intake-webhooks", min_size=0)
        try:
            fanned = asyncio.Event()
            loops = {
                "webhooks.fanout": functools.partial(follow, pool, self._stop, fanned, appended=self._appended),
                "webhooks.sender": functools.partial(
                    Sender(pool, self._box, delivery_config(self._settings)).run, self._stop, fanned),
            }
            tasks = [asyncio.create_task(supervise(name, loop, self._stop, self._health))
                     for name, loop in loops.items()]
            await self._stop.wait()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        finally:
            try:
                await asyncio.wait_for(pool.close(), POOL_CLOSE_TIMEOUT_S)
            except TimeoutError:
                pool.terminate()
