"""Interleaved rounds: (b, c, d at each worker count, then the peer), repeated; medians and per-round ratios.

On a shared 2-core machine, one 15-second measurement after another is noisier than the effects
measured (issue 15): a neighbour's test run lands on one target and not the next. Interleaving
puts every target in every stretch of time, a ratio is taken within a round (its parts measured
minutes apart at most), and the median over rounds is reported with every round beside it.
"""

from __future__ import annotations

import statistics

import msgspec

from bench.measurement import Measurement

ROUND_TARGETS = ("naive", "ceiling", "real", "plaintext", "peer")
PEER_LABEL = "(e) eventsourcing in-process"
# Ratio name -> (numerator target, denominator target, whether the denominator has a worker count).
RATIOS = {"d/b": ("real", "naive", True), "d/c": ("real", "ceiling", True), "d/peer": ("real", "peer", False),
          # issue 11: the service encrypting personal fields ÷ the same service keeping them in clear
          "d/d'": ("real", "plaintext", True)}


class Spread(msgspec.Struct, kw_only=True):
    """One target at one worker count over all rounds."""

    target: str
    workers: int | None
    rounds: int
    rps_median: float
    rps_min: float
    rps_max: float
    p99_median_ms: float
    p99_max_ms: float
    non2xx: int
    unstored: int


def plan(only: list[str], workers: list[int], rounds: int) -> list[tuple[int, str, int | None]]:
    """(round, target, workers) in measuring order: b, c, d at each worker count, then the peer."""
    one = [(t, w) for w in workers for t in ("naive", "ceiling", "real", "plaintext") if t in only]
    if "peer" in only:
        one.append(("peer", None))
    return [(r, target, count) for r in range(1, rounds + 1) for target, count in one]


def spreads(measurements: list[Measurement]) -> list[Spread]:
    """Median and range per (target, workers), over the rounds that measured it."""
    groups: dict[tuple[str, int | None], list[Measurement]] = {}
    for m in measurements:
        if m.round is not None and m.unavailable is None:
            groups.setdefault((m.target, m.workers), []).append(m)
    return [
        Spread(target=target, workers=count, rounds=len(ms),
               rps_median=statistics.median(m.rps for m in ms), rps_min=min(m.rps for m in ms),
               rps_max=max(m.rps for m in ms), p99_median_ms=statistics.median(m.p99_ms for m in ms),
               p99_max_ms=max(m.p99_ms for m in ms), non2xx=sum(m.errors for m in ms),
               unstored=sum(m.unstored for m in ms))
        for (target, count), ms in groups.items()
    ]  # fmt: skip


def round_ratios(measurements: list[Measurement], workers: list[int]) -> dict[str, list[float]]:
    """Each ratio (`d/b @1w`, `d/peer @2w`, …) as computed within each round, in round order."""
    by = {(m.round, m.target, m.workers): m for m in measurements if m.unavailable is None and m.round}
    rounds = sorted({m.round for m in measurements if m.round})
    result: dict[str, list[float]] = {}
    for count in workers:
        for name, (top, bottom, per_worker) in RATIOS.items():
            values = []
            for number in rounds:
                a, b = by.get((number, top, count)), by.get((number, bottom, count if per_worker else None))
                if a and b and b.rps > 0:
                    values.append(round(a.rps / b.rps, 3))
            if values:
                result[f"{name} @{count}w"] = values
    return result


def median_ratios(per_round: dict[str, list[float]]) -> dict[str, float | None]:
    return {name: round(statistics.median(values), 3) for name, values in per_round.items()}


def text(measurements: list[Measurement], per_round: dict[str, list[float]], labels: dict[str, str]) -> str:
    """Medians and ranges per target, then the ratios of every round and their medians."""
    lines = ["target                          workers  rounds  req/s median (min–max)     p99 ms median (max)  failed"]
    for s in spreads(measurements):
        label = labels.get(s.target, PEER_LABEL)
        workers = "-" if s.workers is None else str(s.workers)
        lines.append(f"{label:<32}{workers:>7}  {s.rounds:>6}  {s.rps_median:>8,.0f} ({s.rps_min:,.0f}–{s.rps_max:,.0f})"
                     f"{'':<4}{s.p99_median_ms:>8.1f} ({s.p99_max_ms:.1f}){'':<6}{s.non2xx + s.unstored}")  # fmt: skip
    lines.append("")
    for name, values in per_round.items():
        every = ", ".join(f"{v:.2f}" for v in values)
        lines.append(f"{name}: median {statistics.median(values):.2f} (rounds: {every})")
    if any(name.startswith("d/peer") for name in per_round):
        lines.append("(d/peer: intake over HTTP ÷ eventsourcing in-process)")
    if any(name.startswith("d/d'") for name in per_round):
        lines.append("(d/d': personal fields encrypted per patient ÷ kept in clear; issue 11 asks ≥ 0.9)")
    return "\n".join(lines)


def markdown(measurements: list[Measurement], per_round: dict[str, list[float]], labels: dict[str, str]) -> list[str]:
    rows = ["| target | workers | rounds | req/s median | min–max | p99 ms median | p99 max | failed |",
            "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for s in spreads(measurements):
        rows.append(f"| {labels.get(s.target, PEER_LABEL)} | {'-' if s.workers is None else s.workers} | {s.rounds}"
                    f" | {s.rps_median:,.0f} | {s.rps_min:,.0f}–{s.rps_max:,.0f} | {s.p99_median_ms:.1f}"
                    f" | {s.p99_max_ms:.1f} | {s.non2xx + s.unstored} |")  # fmt: skip
    rows.append("")
    rows += [f"- {name}: median **{statistics.median(v):.2f}** (rounds: {', '.join(f'{x:.2f}' for x in v)})"
             for name, v in per_round.items()]  # fmt: skip
    return rows
