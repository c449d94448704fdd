"""Projection benchmark: how fast `intake worker` materializes the log, and how stale reads get.

Three measurements, each on a fresh database of the run's PostgreSQL and a flushed Redis:

- raw: pgbench committing the least a projector must write per event (three read-model
  rows and three checkpoints in one transaction): the database's own ceiling.
- drain @Nw: `intake serve --workers 2` takes submissions at full speed with no projector
  running (that is the max ingest rate), then N `intake worker` processes start and
  catch up; events/s from the first applied event to the last.
- lag: the service and LAG_WORKERS workers together, submissions offered at LAG_LOAD of
  the max ingest rate (bench/open_loop.py); lag from each 2xx to its event being applied
  by every projection, i.e. readable.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import msgspec
import redis
import uvloop

from bench import database, real_service
from bench.load import run_wrk
from bench.measurement import Measurement, unavailable
from bench.open_loop import LagResult, measure_lag
from bench.raw_baseline import run_pgbench
from bench.servers import REPO_ROOT, running_server, stop
from projections.projector import PROJECTIONS
from service.devstack import EmbeddedPostgres, EmbeddedRedis, free_port

T = TypeVar("T")
RAW_SCRIPT = Path(__file__).with_name("raw_projection.pgbench")
RAW_CLIENTS = 16  # what one worker's arq runs at once (service/worker.py MAX_JOBS)
API_WORKERS = 2
LAG_WORKERS = 2
LAG_LOAD = 0.5
DRAIN_POLL_S = 0.2  # each look sums the checkpoints table, so not too often
DRAIN_TIMEOUT_S = 900
APPLIED_SQL = "SELECT coalesce(sum(version), 0) FROM projection_checkpoints"


class Drain(msgspec.Struct, kw_only=True):
    """Catching up a backlog built at full ingest speed."""

    workers: int
    ingest: Measurement  # the wrk run that built the backlog: the max ingest rate
    events: int = 0
    seconds: float = 0.0
    events_per_s: float = 0.0
    unavailable: str | None = None


class ProjectionRecord(msgspec.Struct, kw_only=True):
    raw: Measurement | None = None
    drains: list[Drain] = []
    max_ingest_rps: float | None = None
    lag: LagResult | None = None
    lag_unavailable: str | None = None
    ratios: dict[str, float | None] = {}


class _Bench:
    def __init__(self, postgres: EmbeddedPostgres, queue: EmbeddedRedis, wrk: str, duration_s: int,
                 warmup_s: int, logs: Path) -> None:  # fmt: skip
        self.postgres, self.queue, self.wrk, self.logs = postgres, queue, wrk, logs
        self.duration_s, self.warmup_s = duration_s, warmup_s
        self.last_database: str | None = None

    def fresh_service(self, name: str) -> tuple[str, str, dict[str, str]]:
        """A migrated database with the bench business, an empty Redis: (url, api key, env);
        dropped (with its autovacuum debt) when the next one is made."""
        if self.last_database:
            database.drop_database(self.postgres, self.last_database)
        self.last_database = name
        url = database.create_database(self.postgres, name)
        api_key = real_service.prepare(url)
        redis.Redis.from_url(self.queue.url()).flushall()
        return url, api_key, {**real_service.service_env(url), "REDIS_URL": self.queue.url()}

    def raw(self) -> Measurement:
        url, _, _ = self.fresh_service("bench_projection_raw")
        count = lambda u: int(database.psql(u, "SELECT count(*) FROM consultations"))  # noqa: E731
        run_pgbench(url, duration_s=self.warmup_s, script=RAW_SCRIPT, clients=RAW_CLIENTS, count_rows=count)
        database.checkpoint(url)
        return run_pgbench(url, duration_s=self.duration_s, script=RAW_SCRIPT, clients=RAW_CLIENTS,
                           target="raw_projection", count_rows=count)  # fmt: skip

    def drain(self, workers: int) -> Drain:
        url, api_key, env = self.fresh_service(f"bench_projection_{workers}w")
        port = free_port()
        target = f"http://127.0.0.1:{port}{real_service.SUBMISSIONS_PATH}"
        load = dict(api_key=api_key, target="real", workers=API_WORKERS)
        with running_server(real_service.serve_argv(port, API_WORKERS), port=port, env=env,
                            log_path=self.logs / f"ingest-{workers}w.log"):  # fmt: skip
            run_wrk(self.wrk, target, duration_s=self.warmup_s, **load)
            ingest = run_wrk(self.wrk, target, duration_s=self.duration_s, **load)
        database.checkpoint(url)
        events = database.count_events(url)
        result = Drain(workers=workers, ingest=ingest, events=events)
        with running_workers(workers, env, self.logs / f"drain-{workers}w.log"):
            applied, seconds = asyncio.run(_time_catch_up(url, events * len(PROJECTIONS)))
        result.seconds = round(seconds, 2)
        if applied < events * len(PROJECTIONS):
            result.unavailable = f"caught up {applied}/{events * len(PROJECTIONS)} in {DRAIN_TIMEOUT_S}s"
        else:
            result.events_per_s = round(events / seconds, 1) if seconds else 0.0
        return result

    def lag(self, rate: float) -> LagResult:
        url, api_key, env = self.fresh_service("bench_projection_lag")
        port = free_port()
        with (running_workers(LAG_WORKERS, env, self.logs / "lag-workers.log"),
              running_server(real_service.serve_argv(port, API_WORKERS), port=port, env=env,
                             log_path=self.logs / "lag-serve.log")):  # fmt: skip
            return _run_fast(measure_lag(
                host="127.0.0.1", port=port, path=real_service.SUBMISSIONS_PATH, api_key=api_key,
                database_url=url, projections=list(PROJECTIONS), rate=rate,
                warmup_s=self.warmup_s, duration_s=self.duration_s,
            ))  # fmt: skip


def _run_fast(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run on uvloop: the load generator shares two cores with what it measures."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


async def _time_catch_up(url: str, target: int) -> tuple[int, float]:
    """(checkpoint versions applied, seconds from the first applied event to `target`)."""
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        first: float | None = None
        applied = 0
        while applied < target and time.monotonic() < deadline:
            applied = await conn.fetchval(APPLIED_SQL)
            if applied and first is None:
                first = time.monotonic()
            await asyncio.sleep(DRAIN_POLL_S)
        return applied, time.monotonic() - (first or deadline)
    finally:
        await conn.close()


@contextlib.contextmanager
def running_workers(count: int, env: dict[str, str], log_path: Path) -> Iterator[None]:
    """`count` `intake worker` processes (each with its relay) until the block ends."""
    processes = []
    with open(log_path, "ab") as log:
        try:
            for _ in range(count):
                processes.append(subprocess.Popen(
                    [*real_service.intake_argv(), "worker"], cwd=REPO_ROOT,
                    env={**env, "PYTHONPATH": str(REPO_ROOT)}, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True,
                ))  # fmt: skip
            yield
        finally:
            for process in processes:
                stop(process)


def measure(postgres: EmbeddedPostgres, wrk: str, worker_counts: list[int], duration_s: int, warmup_s: int,
            logs: Path) -> ProjectionRecord:  # fmt: skip
    """Every projection measurement; a failing one is recorded, not fatal."""
    record = ProjectionRecord()
    with EmbeddedRedis(logs / "redis") as queue:
        bench = _Bench(postgres, queue, wrk, duration_s, warmup_s, logs)
        print("measuring raw projection writes (pgbench) ...", flush=True)
        try:
            record.raw = bench.raw()
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            record.raw = unavailable("raw_projection", None, str(error).strip().splitlines()[0])
        for workers in worker_counts:
            print(f"measuring projection drain @{workers}w ...", flush=True)
            try:
                record.drains.append(bench.drain(workers))
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                reason = str(error).strip().splitlines()[0]
                record.drains.append(Drain(workers=workers, ingest=unavailable("real", API_WORKERS, reason),
                                           unavailable=reason))  # fmt: skip
        ingest = [d.ingest.rps for d in record.drains if d.ingest.valid]
        record.max_ingest_rps = max(ingest) if ingest else None
        if record.max_ingest_rps:
            print(f"measuring projection lag at {LAG_LOAD:.0%} of {record.max_ingest_rps:,.0f} req/s ...", flush=True)
            try:
                record.lag = bench.lag(round(record.max_ingest_rps * LAG_LOAD, 1))
            except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
                record.lag_unavailable = str(error).strip().splitlines()[0]
        else:
            record.lag_unavailable = "no valid max ingest measurement"
    record.ratios = _ratios(record)
    return record


def _ratios(record: ProjectionRecord) -> dict[str, float | None]:
    result: dict[str, float | None] = {}
    raw = record.raw.rps if record.raw and record.raw.valid else None
    for drain in record.drains:
        ok = drain.unavailable is None and drain.events_per_s
        result[f"projection/raw @{drain.workers}w"] = round(drain.events_per_s / raw, 3) if ok and raw else None
        result[f"projection/max ingest @{drain.workers}w"] = (
            round(drain.events_per_s / record.max_ingest_rps, 3) if ok and record.max_ingest_rps else None)
    return result


def valid(record: ProjectionRecord) -> bool:
    lag = record.lag
    return bool(
        record.raw and record.raw.valid and record.drains
        and all(d.unavailable is None and d.ingest.valid for d in record.drains)
        and lag and not (lag.non2xx or lag.failed or lag.unseen) and lag.samples
    )  # fmt: skip


def text(record: ProjectionRecord) -> str:
    """The terminal summary (also the body of the markdown section)."""
    lines = []
    if record.raw:
        raw = record.raw
        lines.append(f"raw projection writes (pgbench -c {RAW_CLIENTS}): "
                     + (f"unavailable: {raw.unavailable}" if raw.unavailable else
                        f"{raw.rps:,.0f} events/s, p99 {raw.p99_ms:.2f} ms, {raw.non2xx} failed"))  # fmt: skip
    for d in record.drains:
        ingest = d.ingest
        lines.append(
            f"drain @{d.workers}w: " + (f"unavailable: {d.unavailable}" if d.unavailable else
            f"{d.events:,} events in {d.seconds:.1f} s = {d.events_per_s:,.0f} events/s"
            f" (backlog built at {ingest.rps:,.0f} req/s, p99 {ingest.p99_ms:.1f} ms, {ingest.errors} failed)")
        )  # fmt: skip
    if record.lag:
        lag = record.lag
        lines.append(
            f"lag @{LAG_WORKERS}w at {lag.target_rps:,.0f} req/s offered ({lag.achieved_rps:,.0f} 2xx/s achieved):"
            f" p50 {lag.p50_ms:.1f} ms, p99 {lag.p99_ms:.1f} ms, max {lag.max_ms:.1f} ms over {lag.samples:,}"
            f" submissions; answers p50 {lag.answer_p50_ms:.1f} / p99 {lag.answer_p99_ms:.1f} ms;"
            f" {lag.non2xx} non-2xx, {lag.failed} failed, {lag.unseen} never applied, {lag.late_ticks} late ticks;"
            f" the load generator used {lag.generator_cpu:.0%} of a core"
        )  # fmt: skip
    elif record.lag_unavailable:
        lines.append(f"lag: unavailable: {record.lag_unavailable}")
    lines.append("ratios: " + "; ".join(f"{k}: {'n/a' if v is None else f'{v:.2f}'}"
                                        for k, v in record.ratios.items()))  # fmt: skip
    if not valid(record):
        lines.append("!!! projection measurements incomplete or with failures: NOT a valid result")
    return "\n".join(lines)


def markdown(record: ProjectionRecord) -> str:
    return "\n".join(["#### Projections", "", *(f"- {line}" for line in text(record).splitlines())])
