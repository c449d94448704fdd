"""The worker's long-running loops, supervised: whatever ends one is logged and the loop is started
again with capped backoff, and each loop's health is kept where the probes (service/probes.py) read it.

A loop reports each healthy iteration through the callback it is given; a loop is *failing* when
it has crashed FAILING_AFTER times with no healthy iteration between, or (if it has a stall bound)
when it has not completed one for that long. Restarting the process would not help any of this
(the supervisor already restarts the loop), so it shows in readiness, not in liveness.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis.exceptions
import structlog

from events.errors import StoreUnavailable
from events.redaction import redacted_traceback

RESTART_MIN_S = 0.1
RESTART_MAX_S = 5.0
FAILING_AFTER = 3  # crashes in a row: one crash is a restart, three mean the cause is not going away
STALLED_AFTER_S = 60.0  # far above any loop's iteration (relay ≤ ~1 s, listener 0.5 s, arq 10 ms)
# Outages clear by themselves and say nothing about our code: a warning, no traceback.
OUTAGES = (StoreUnavailable, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
_log = structlog.get_logger("intake.worker")

Healthy = Callable[[], None]
Loop = Callable[[Healthy], Awaitable[None]]


@dataclasses.dataclass
class LoopState:
    """What the supervisor knows about one loop."""

    stall_after_s: float | None
    last_healthy: float
    crashes_in_a_row: int = 0
    last_error: str | None = None

    def state(self, now: float) -> str:
        stalled = self.stall_after_s is not None and now - self.last_healthy > self.stall_after_s
        if self.crashes_in_a_row >= FAILING_AFTER or stalled:
            return "failing"
        return "restarting" if self.crashes_in_a_row else "ok"


class LoopHealth:
    """Every supervised loop's state, for /readyz and for `intake dev`'s process alike."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._loops: dict[str, LoopState] = {}

    def watch(self, name: str, *, stall_after_s: float | None = STALLED_AFTER_S) -> Healthy:
        """Start tracking `name`; returns the callback its loop calls after each healthy iteration."""
        self._loops[name] = LoopState(stall_after_s, last_healthy=self._clock())
        return lambda: self.healthy(name)

    def healthy(self, name: str) -> None:
        """A healthy iteration: the crash streak is over."""
        loop = self._loops[name]
        loop.last_healthy = self._clock()
        loop.crashes_in_a_row = 0

    def crashed(self, name: str, error: BaseException) -> int:
        """Count a crash; returns how many in a row."""
        loop = self._loops[name]
        loop.crashes_in_a_row += 1
        loop.last_error = type(error).__name__
        return loop.crashes_in_a_row

    def mirror(self, name: str, reported: dict[str, Any]) -> None:
        """The state of a loop supervised in another process, from its LoopHealth's `report()`."""
        loop = self._loops.setdefault(name, LoopState(STALLED_AFTER_S, last_healthy=self._clock()))
        loop.crashes_in_a_row, loop.last_error = reported["crashes_in_a_row"], reported["last_error"]
        loop.last_healthy = self._clock() - reported["healthy_s_ago"]

    def ready(self) -> bool:
        """Whether no loop is failing."""
        now = self._clock()
        return all(loop.state(now) != "failing" for loop in self._loops.values())

    def report(self) -> dict[str, dict[str, Any]]:
        """Per loop: state, crashes in a row, the last error's type (never its message), seconds since healthy."""
        now = self._clock()
        return {name: {"state": loop.state(now), "crashes_in_a_row": loop.crashes_in_a_row,
                       "last_error": loop.last_error, "healthy_s_ago": round(now - loop.last_healthy, 3)}
                for name, loop in sorted(self._loops.items())}


async def supervise(name: str, loop: Loop, stop: asyncio.Event, health: LoopHealth,
                    *, stall_after_s: float | None = STALLED_AFTER_S) -> None:
    """Run `loop` until `stop`; whatever ends it early is logged and it is started again, with backoff."""
    healthy = health.watch(name, stall_after_s=stall_after_s)
    while not stop.is_set():
        try:
            await loop(healthy)
            delay = RESTART_MIN_S  # a loop returns only once `stop` is set; should one not, no busy spin
        # The one place for `except Exception`: a supervisor exists so that no error, expected or
        # not, ends a loop silently; it logs the cause and restarts (CancelledError still passes).
        except Exception as error:
            streak = health.crashed(name, error)
            delay = restart_delay(streak)
            log_crash(name, error, retry_in_s=delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


def restart_delay(crashes_in_a_row: int) -> float:
    """RESTART_MIN_S doubling per crash up to RESTART_MAX_S; the exponent is capped, so no streak overflows."""
    return min(RESTART_MIN_S * 2 ** min(crashes_in_a_row - 1, 10), RESTART_MAX_S)


def log_crash(name: str, error: BaseException, **fields: Any) -> None:
    """An outage as a quiet warning; anything else as an error with its type and frames."""
    if isinstance(error, OUTAGES):
        _log.warning("worker.loop_unavailable", loop=name, error=type(error).__name__, **fields)
    else:
        _log.error("worker.loop_crashed", loop=name, error=type(error).__name__,
                   traceback=redacted_traceback(error), **fields)
