"""Fault injection for drills: make named points on the write path delay, fail or crash.

`INTAKE_FAULTS="append.after_commit=crash;append.before_commit=delay:200"`

Points: `request.before_append`, `append.before_commit` (inside the transaction,
rows inserted, not committed), `append.after_commit` (committed, before the
response). Actions: `delay:MS`, `error` (the request fails as if the database
had gone: 503), `crash` (SIGKILL of this process: nothing runs after it),
optionally `@P` to fire with probability P (e.g. `crash@0.01`).

Off unless INTAKE_FAULTS is set, and refused outright when INTAKE_ENV=production,
so production never has them on by accident.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from dataclasses import dataclass

import structlog

from events.errors import StoreUnavailable

POINTS = frozenset({"request.before_append", "append.before_commit", "append.after_commit"})
_log = structlog.get_logger("intake.faults")


class FaultConfigError(Exception):
    """INTAKE_FAULTS is malformed, names an unknown point, or is set in production."""


class InjectedFault(StoreUnavailable):
    """A drill made this request fail on purpose."""


@dataclass(frozen=True, slots=True)
class _Fault:
    action: str
    delay_s: float
    probability: float


class Faults:
    """The configured faults; `await faults.hit(point)` at each named point."""

    def __init__(self, spec: str, *, environment: str, rng: random.Random | None = None) -> None:
        self._faults = _parse(spec)
        if self._faults and environment == "production":
            raise FaultConfigError("INTAKE_FAULTS is set but INTAKE_ENV=production: refusing to start")
        self._rng = rng or random.Random()
        if self._faults:
            _log.warning("faults.enabled", points=sorted(self._faults))

    @property
    def enabled(self) -> bool:
        """Whether any fault is configured."""
        return bool(self._faults)

    async def hit(self, point: str) -> None:
        """Run the fault configured at `point`, if any."""
        fault = self._faults.get(point)
        if fault is None or self._rng.random() >= fault.probability:
            return
        if fault.action == "delay":
            await asyncio.sleep(fault.delay_s)
        elif fault.action == "error":
            raise InjectedFault(f"{InjectedFault.__doc__} ({point})")
        else:
            os.kill(os.getpid(), signal.SIGKILL)


def _parse(spec: str) -> dict[str, _Fault]:
    faults = {}
    for item in filter(None, (part.strip() for part in spec.split(";"))):
        point, _, action = item.partition("=")
        if point not in POINTS:
            raise FaultConfigError(f"unknown fault point {point!r}; known: {', '.join(sorted(POINTS))}")
        action, _, probability = action.partition("@")
        name, _, argument = action.partition(":")
        if name not in {"delay", "error", "crash"} or (name == "delay") != bool(argument):
            raise FaultConfigError(f"bad fault action {action!r} at {point}")
        try:
            faults[point] = _Fault(name, float(argument or 0) / 1000, float(probability or 1))
        except ValueError:
            raise FaultConfigError(f"bad number in fault {item!r}") from None
    return faults
