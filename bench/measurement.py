"""One row of the benchmark: what a load run measured, or why it could not run."""

from __future__ import annotations

import msgspec


class Measurement(msgspec.Struct, kw_only=True):
    """Throughput and latency of one target at one worker count."""

    target: str  # "raw", "naive", "ceiling", "real" or "peer"
    workers: int | None  # None for the raw PostgreSQL baseline and the in-process peer
    requests: int = 0
    duration_s: float = 0.0
    rps: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    # Failed responses (non-2xx) or, for pgbench, failed transactions.
    non2xx: int = 0
    socket_errors: dict[str, int] = {}
    status_counts: dict[str, int] = {}
    error_sample: str | None = None
    # Event rows the database gained during the measured window (None: not a database target).
    # In-flight requests at the cutoff are written but not counted, so expect a few more
    # rows than successes; fewer would mean acknowledged submissions that were not stored.
    rows_written: int | None = None
    unavailable: str | None = None
    round: int | None = None  # which interleaved round (bench/rounds.py); None: measured once

    @property
    def errors(self) -> int:
        """Every failed request: a measurement with any is not a valid result."""
        return self.non2xx + sum(self.socket_errors.values())

    @property
    def unstored(self) -> int:
        """Successful responses beyond the rows written: acknowledged but not in the database."""
        if self.rows_written is None:
            return 0
        return max(0, self.requests - self.non2xx - self.rows_written)

    @property
    def valid(self) -> bool:
        return self.unavailable is None and not self.errors and not self.unstored and self.requests > 0


def unavailable(target: str, workers: int | None, reason: str) -> Measurement:
    """A placeholder row for a target that could not be measured."""
    return Measurement(target=target, workers=workers, unavailable=reason)


def percentile(seconds: list[float], p: float) -> float:
    """The nearest-rank p-th percentile of durations in seconds, in milliseconds."""
    ordered = sorted(seconds)
    rank = max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[rank] * 1000, 2)
