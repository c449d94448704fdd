"""The webhooks' process (started by service/webhook_process.py): fan-out and sender, on a loop of their own.

Its loops are supervised here as they were in the worker (restarted with backoff whatever ends
them) and their health is sent to the worker every REPORT_S. It stops on SIGTERM (from the worker),
and when the worker that started it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import functools
import multiprocessing.connection
import os
import signal
import sys

import uvloop

from projections.deliveries import Sender
from projections.fanout import follow
from projections.relay import listen
from service.db import create_pool as create_db_pool
from service.logs import configure_logging
from service.loops import LoopHealth, supervise
from service.settings import Settings
from service.webhooks import delivery_config, secret_box

REPORT_S = 0.5
_PR_SET_PDEATHSIG = 1  # linux/prctl.h


def main(settings: Settings, reports: multiprocessing.connection.Connection, parent: int) -> None:
    """The child's entry point (a multiprocessing target)."""
    _die_with_parent(parent)
    configure_logging(settings.log_level, settings.log_format)

    # A Ctrl-C reaches the whole process group: the worker stops, and stops us with SIGTERM, rather
    # than finding us gone first and starting us again on its way out.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    async def run() -> None:
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await _serve(settings, reports, parent, stop)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(run())


def _die_with_parent(parent: int) -> None:
    """SIGKILL when the worker's thread that started us ends (kill -9 included), where Linux offers it."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # it died before the line above: nothing would ever stop us
        os._exit(1)


async def _serve(settings: Settings, reports: multiprocessing.connection.Connection, parent: int,
                 stop: asyncio.Event) -> None:
    health = LoopHealth()
    box = secret_box(settings)
    # min_size 0: it opens only the connections the fan-out and the sender keep (three).
    pool = await create_db_pool(settings, application_name="intake-webhooks", min_size=0)
    appended, fanned = asyncio.Event(), asyncio.Event()  # new events committed; new deliveries made
    loops = {
        # Its own LISTEN for the outbox notifications: the fan-out looks at once, not at its poll.
        "webhooks.listener": functools.partial(listen, settings.require_database_url(), appended, stop),
        "webhooks.fanout": functools.partial(follow, pool, stop, fanned, appended=appended),
        "webhooks.sender": functools.partial(Sender(pool, box, delivery_config(settings)).run, stop, fanned),
    }
    tasks = [asyncio.create_task(supervise(name, loop, stop, health)) for name, loop in loops.items()]
    try:
        with contextlib.suppress(BrokenPipeError):  # the worker is gone: so are we
            while not stop.is_set() and os.getppid() == parent:
                reports.send(health.report())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), REPORT_S)
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await pool.close()
