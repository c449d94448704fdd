"""Replay benchmark: `intake events replay --format jsonl > /dev/null` over the whole generated log,
beside psql's `COPY (SELECT the same columns ORDER BY position) TO STDOUT > /dev/null` in the same
run: the database's own cost of handing those rows out, with no decoding, upcasting or JSON
encoding. Rounds alternate the order of the two; medians and the spread are reported. Both run as
children of bench/child_usage.py, which reports wall time and peak RSS.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import msgspec

from bench import database, real_service
from bench.child_usage import measure
from bench.rebuild import Log

TIMEOUT_S = 600
TARGET_EVENTS_PER_S, TARGET_RSS_MB = 100_000.0, 150.0
COPY_SQL = ("COPY (SELECT position, event_id, stream_id, stream_version, event_type, schema_version, recorded_at,"
            " payload, metadata FROM events ORDER BY position) TO STDOUT")  # fmt: skip


class ReplayRound(msgspec.Struct, kw_only=True):
    replay_s: float
    replay_rss_mb: float
    copy_s: float


class ReplayRecord(msgspec.Struct, kw_only=True):
    events: int
    rounds: list[ReplayRound] = []
    replay_s: float = 0.0  # medians
    copy_s: float = 0.0
    events_per_s: float = 0.0
    copy_events_per_s: float = 0.0
    ratio: float = 0.0  # replay's events/s over COPY's
    peak_rss_mb: float = 0.0
    unavailable: str | None = None


def _replay(log: Log, logs: Path) -> tuple[float, float]:
    usage = measure([*real_service.intake_argv(), "events", "replay", "--format", "jsonl"],
                    real_service.service_env(log.url), logs / "replay.log", timeout_s=TIMEOUT_S,
                    quiet_stdout=True)  # fmt: skip
    return usage.seconds, usage.peak_rss_mb


def _copy(log: Log, logs: Path) -> float:
    usage = measure([*database.psql_argv(log.url), "-c", COPY_SQL], {}, logs / "replay-copy.log",
                    timeout_s=TIMEOUT_S, quiet_stdout=True)  # fmt: skip
    return usage.seconds


def measure_replay(log: Log, rounds: int, logs: Path) -> ReplayRecord:
    record = ReplayRecord(events=log.events)
    for n in range(rounds):
        print(f"measuring replay round {n + 1}/{rounds} ...", flush=True)
        if n % 2 == 0:
            copy_s = _copy(log, logs)
            replay_s, rss = _replay(log, logs)
        else:
            replay_s, rss = _replay(log, logs)
            copy_s = _copy(log, logs)
        record.rounds.append(ReplayRound(replay_s=round(replay_s, 2), replay_rss_mb=rss, copy_s=round(copy_s, 2)))
    record.replay_s = round(statistics.median(r.replay_s for r in record.rounds), 2)
    record.copy_s = round(statistics.median(r.copy_s for r in record.rounds), 2)
    record.events_per_s = round(log.events / record.replay_s, 0)
    record.copy_events_per_s = round(log.events / record.copy_s, 0)
    record.ratio = round(record.events_per_s / record.copy_events_per_s, 2)
    record.peak_rss_mb = max(r.replay_rss_mb for r in record.rounds)
    return record


def valid(record: ReplayRecord) -> bool:
    return record.unavailable is None and bool(record.rounds)


def text(record: ReplayRecord) -> str:
    if record.unavailable:
        return f"replay: unavailable: {record.unavailable}"
    rounds = ", ".join(f"{r.replay_s:.1f}/{r.copy_s:.1f} s" for r in record.rounds)
    fast, small = record.events_per_s >= TARGET_EVENTS_PER_S, record.peak_rss_mb < TARGET_RSS_MB
    return "\n".join([
        f"replay to JSONL, {record.events:,} events: median {record.replay_s:.1f} s = {record.events_per_s:,.0f}"
        f" events/s vs COPY … TO STDOUT {record.copy_s:.1f} s = {record.copy_events_per_s:,.0f} events/s:"
        f" {record.ratio:.2f}× COPY's rate (rounds replay/copy: {rounds}); peak RSS {record.peak_rss_mb:.0f} MB",
        f"targets: ≥ {TARGET_EVENTS_PER_S:,.0f} events/s {'met' if fast else 'MISSED'};"
        f" RSS < {TARGET_RSS_MB:.0f} MB {'met' if small else 'MISSED'}",
    ])  # fmt: skip


def markdown(record: ReplayRecord) -> str:
    return "\n".join(["#### Replay", "", *(f"- {line}" for line in text(record).splitlines())])
