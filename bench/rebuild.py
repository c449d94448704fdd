"""Rebuild benchmark: `intake projections rebuild` of all three read models from a generated log,
beside PostgreSQL building the same tables set-based (bench/raw_rebuild.sql), in the same run; and
the API's p99 under a fixed-rate load, idle and while a rebuild runs.

Rounds interleave the two (baseline then rebuild, then the other way round), so a slow spell of
the shared machine lands on both; medians and the spread are reported. The rebuild runs as a
child of bench/child_usage.py, which reports its wall time and peak RSS.
"""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
from pathlib import Path

import asyncpg
import msgspec

from bench import database, real_service
from bench.child_usage import Measured, measure
from bench.generated_log import write_log
from bench.projection import _run_fast
from bench.servers import running_server
from bench.steady_load import PhaseResult, run_phase
from service.devstack import EmbeddedPostgres, free_port

RAW_SQL = Path(__file__).with_name("raw_rebuild.sql")
DATABASE = "bench_rebuild"
REBUILD_TIMEOUT_S = 900
RAW_TIMEOUT_S = 900
TARGET_S, TARGET_RATIO, TARGET_RSS_MB, TARGET_P99_RATIO = 60.0, 3.0, 400.0, 2.0
API_WORKERS = 2
RATE_PER_KIND = 100.0  # reads/s and submissions/s offered: far below saturation, so p99 shows interference
READ_IDS = 2_000
LAST_LINES = 4


class Log(msgspec.Struct, kw_only=True):
    """The generated log both benchmarks read."""

    url: str
    business_id: int
    api_key: str  # submissions:write and consultations:read
    events: int
    seconds: float  # to generate and COPY it


class Round(msgspec.Struct, kw_only=True):
    rebuild_s: float
    rebuild_rss_mb: float
    raw_s: float


class RebuildRecord(msgspec.Struct, kw_only=True):
    events: int
    rounds: list[Round] = []
    rebuild_s: float = 0.0  # medians
    raw_s: float = 0.0
    peak_rss_mb: float = 0.0  # the largest of the rounds
    ratio: float = 0.0
    rows: str = ""  # rebuilt vs baseline tables after the last round: counts and differing rows
    idle: PhaseResult | None = None
    during: PhaseResult | None = None
    during_rebuild_s: float = 0.0
    during_output: list[str] = []  # its last lines, timed like the load's slowest requests
    unavailable: str | None = None


def prepare(postgres: EmbeddedPostgres, events: int, *, sealed: bool = True) -> Log:
    """A fresh migrated database with the bench business, a key, and `events` generated events."""
    database.drop_database(postgres, DATABASE)
    url = database.create_database(postgres, DATABASE)
    real_service.prepare(url)
    api_key = real_service.issue_key(url, "submissions:write", "consultations:read")
    started = time.monotonic()
    business_id, written = asyncio.run(_write(url, events, sealed))
    database.psql(url, "VACUUM (ANALYZE) events")  # set hint bits now, not during the first measurement
    database.checkpoint(url)
    return Log(url=url, business_id=business_id, api_key=api_key, events=written,
               seconds=round(time.monotonic() - started, 1))


async def _write(url: str, events: int, sealed: bool) -> tuple[int, int]:
    conn = await asyncpg.connect(url)
    try:
        business_id = await conn.fetchval("SELECT id FROM businesses WHERE slug = $1", real_service.BUSINESS_SLUG)
        return business_id, await write_log(conn, business_id=business_id, events=events,
                                           keyring=real_service.run_keyring() if sealed else None)
    finally:
        await conn.close()


def rebuild_argv() -> list[str]:
    return [*real_service.intake_argv(), "projections", "rebuild"]


def _rebuild(log: Log, logs: Path) -> tuple[float, float]:
    usage = measure(rebuild_argv(), real_service.service_env(log.url), logs / "rebuild.log",
                    timeout_s=REBUILD_TIMEOUT_S)  # fmt: skip
    return usage.seconds, usage.peak_rss_mb


def _raw(log: Log) -> float:
    blocks = dict(_blocks(RAW_SQL.read_text()))
    database.psql(log.url, blocks["prepare"])
    database.checkpoint(log.url)
    started = time.monotonic()
    done = subprocess.run([*database.psql_argv(log.url), "-c", blocks["build"]], capture_output=True, text=True,
                          timeout=RAW_TIMEOUT_S)  # fmt: skip
    seconds = time.monotonic() - started
    if done.returncode != 0:
        raise RuntimeError(f"raw rebuild failed: {done.stderr.strip()}")
    return seconds


def _blocks(text: str) -> list[tuple[str, str]]:
    parts = text.split("-- name: ")[1:]
    return [(part.split("\n", 1)[0].strip(), part.split("\n", 1)[1]) for part in parts]


def measure_rebuild(log: Log, rounds: int, logs: Path) -> RebuildRecord:
    record = RebuildRecord(events=log.events)
    for n in range(rounds):
        print(f"measuring rebuild round {n + 1}/{rounds} ({log.events:,} events) ...", flush=True)
        if n % 2 == 0:
            raw_s = _raw(log)
            database.checkpoint(log.url)
            rebuild_s, rss = _rebuild(log, logs)
        else:
            rebuild_s, rss = _rebuild(log, logs)
            database.checkpoint(log.url)
            raw_s = _raw(log)
        database.checkpoint(log.url)
        record.rounds.append(Round(rebuild_s=round(rebuild_s, 2), rebuild_rss_mb=rss, raw_s=round(raw_s, 2)))
    record.rows = database.psql(log.url, dict(_blocks(RAW_SQL.read_text()))["check"])
    database.psql(log.url, dict(_blocks(RAW_SQL.read_text()))["drop"])
    record.rebuild_s = round(statistics.median(r.rebuild_s for r in record.rounds), 2)
    record.raw_s = round(statistics.median(r.raw_s for r in record.rounds), 2)
    record.peak_rss_mb = max(r.rebuild_rss_mb for r in record.rounds)
    record.ratio = round(record.rebuild_s / record.raw_s, 2) if record.raw_s else 0.0
    return record


def measure_api(record: RebuildRecord, log: Log, duration_s: int, warmup_s: int, logs: Path) -> None:
    """p99 of reads and submissions at a fixed rate: `duration_s` idle, then for a whole rebuild."""
    ids = database.psql(log.url, f"SELECT consultation_id FROM consultations ORDER BY random() LIMIT {READ_IDS}")
    port = free_port()
    load = dict(host="127.0.0.1", port=port, slug=real_service.BUSINESS_SLUG, api_key=log.api_key,
                consultation_ids=ids.split(), rate_per_kind=RATE_PER_KIND)  # fmt: skip
    with running_server(real_service.serve_argv(port, API_WORKERS), port=port,
                        env=real_service.service_env(log.url), log_path=logs / "rebuild-serve.log"):  # fmt: skip
        print("measuring API p99 idle ...", flush=True)
        _run_fast(run_phase(**load, until=lambda t: t >= warmup_s, max_s=warmup_s))
        record.idle = _run_fast(run_phase(**load, until=lambda t: t >= duration_s, max_s=duration_s))
        print("measuring API p99 during a rebuild ...", flush=True)
        child = Measured(rebuild_argv(), real_service.service_env(log.url), logs / "rebuild-live.log",
                         quiet_stdout=False, timed_lines=True)  # fmt: skip
        try:
            record.during = _run_fast(run_phase(**load, until=lambda t: child.process.poll() is not None,
                                                max_s=REBUILD_TIMEOUT_S))  # fmt: skip
        finally:
            record.during_rebuild_s = child.wait(REBUILD_TIMEOUT_S).seconds
            record.during_output = child.lines[-LAST_LINES:]


def p99_ratios(record: RebuildRecord) -> dict[str, float | None]:
    result: dict[str, float | None] = {}
    for kind in ("reads", "submissions"):
        idle = getattr(record.idle, kind) if record.idle else None
        during = getattr(record.during, kind) if record.during else None
        ok = idle and during and idle.p99_ms
        result[kind] = round(during.p99_ms / idle.p99_ms, 2) if ok else None  # type: ignore[union-attr]
    return result


def valid(record: RebuildRecord) -> bool:
    phases = [p for p in (record.idle, record.during) if p is not None]
    return record.unavailable is None and bool(record.rounds) and len(phases) == 2 and all(
        k.requests and not (k.non2xx or k.failed) for p in phases for k in (p.reads, p.submissions))


def _met(ok: bool) -> str:
    return "met" if ok else "MISSED"


def text(record: RebuildRecord) -> str:
    if record.unavailable:
        return f"rebuild: unavailable: {record.unavailable}"
    rounds = ", ".join(f"{r.rebuild_s:.1f}/{r.raw_s:.1f} s" for r in record.rounds)
    rate = record.events / record.rebuild_s if record.rebuild_s else 0.0
    lines = [
        f"rebuild of all three projections, {record.events:,} events: median {record.rebuild_s:.1f} s"
        f" ({rate:,.0f} events/s) vs set-based INSERT … SELECT {record.raw_s:.1f} s = {record.ratio:.2f}×"
        f" (rounds rebuild/raw: {rounds}); peak RSS {record.peak_rss_mb:.0f} MB",
        f"targets: ≤ {TARGET_S:.0f} s {_met(record.rebuild_s <= TARGET_S)}; ≤ {TARGET_RATIO:.0f}× raw"
        f" {_met(record.ratio <= TARGET_RATIO)}; RSS ≤ {TARGET_RSS_MB:.0f} MB {_met(record.peak_rss_mb <= TARGET_RSS_MB)}",
        f"rebuilt/baseline tables after the last round: {record.rows}",
    ]  # fmt: skip
    ratios = p99_ratios(record)
    for name, phase in (("idle", record.idle), (f"during a {record.during_rebuild_s:.0f} s rebuild", record.during)):
        if phase is None:
            continue
        lines.append(
            f"API {name}, {phase.rate_per_kind:.0f} reads/s + {phase.rate_per_kind:.0f} submissions/s for"
            f" {phase.seconds:.0f} s: " + "; ".join(
                f"{kind} p50 {k.p50_ms:.1f} / p99 {k.p99_ms:.1f} / max {k.max_ms:.1f} ms"
                f" ({k.requests:,} requests, {k.non2xx} non-2xx, {k.failed} failed;"
                f" slowest at {', '.join(f'{t:.0f} s' for t, _ in k.slowest)})"
                for kind, k in (("reads", phase.reads), ("submissions", phase.submissions)))
            + f"; {phase.late_ticks} late ticks")  # fmt: skip
    lines.append("API p99 during/idle: " + "; ".join(
        f"{kind} {'n/a' if v is None else f'{v:.2f}×'} ({'n/a' if v is None else _met(v <= TARGET_P99_RATIO)})"
        for kind, v in ratios.items()) + f" (target ≤ {TARGET_P99_RATIO:.0f}×)")  # fmt: skip
    if record.during_output:
        lines.append("the rebuild under load printed (seconds since it started): " + " | ".join(record.during_output))
    if not valid(record):
        lines.append("!!! rebuild measurements incomplete or with failed requests: NOT a valid result")
    return "\n".join(lines)


def markdown(record: RebuildRecord) -> str:
    return "\n".join(["#### Rebuild", "", *(f"- {line}" for line in text(record).splitlines())])
