"""Outbound webhook benchmark: how fast `intake worker` delivers, and how long commit → delivery takes.

On a fresh database with one endpoint (a receiver in a process of its own on 127.0.0.1, answering
200 at once: bench/webhook_receiver.py) subscribed to `consult.submitted`:

- drain: `intake serve --workers 2` takes submissions at full speed (wrk) with no worker running,
  which is also the max ingest rate; then WORKERS `intake worker` processes start and deliver the
  backlog: deliveries/s from the first received to the last.
- delay: the service and the workers together, submissions offered at LOAD of the max ingest rate
  (bench/open_loop.py, open loop; the rate the API achieved is reported beside it); for each event
  committed in the measured window, its arrival at the receiver (time.time() when the receiver's
  handler runs) minus its commit (PostgreSQL's commit timestamp; same clock, one machine): the
  delay from commit to delivery. Target p99 ≤ 500 ms. Where that time goes, stage by stage:
  bench/webhook_stages.py.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import asyncpg
import msgspec
import redis

from bench import database, real_service
from bench.load import run_wrk
from bench.measurement import percentile
from bench.open_loop import measure_lag
from bench.projection import _run_fast, running_workers
from bench.servers import REPO_ROOT, running_server
from bench.webhook_receiver import RemoteArrivals
from bench.webhook_receiver import argv as receiver_argv
from bench.webhook_stages import StageWatcher, stage_delays
from service.devstack import EmbeddedPostgres, EmbeddedRedis, free_port

WORKERS = 2
API_WORKERS = 2
LOAD = 0.5
DRAIN_TIMEOUT_S = 300
SETTLE_TIMEOUT_S = 60
# Each event's commit time (bench/database.py turns track_commit_timestamp on): the delay is measured
# from it, not from recorded_at, which is stamped when the appending transaction starts.
COMMITTED_SQL = """
SELECT event_id::text AS id, extract(epoch FROM recorded_at)::float8 AS recorded,
       extract(epoch FROM pg_xact_commit_timestamp(xmin))::float8 AS committed
FROM events WHERE pg_xact_commit_timestamp(xmin) >= to_timestamp($1)
"""


class WebhookRecord(msgspec.Struct, kw_only=True):
    """What the webhook benchmark measured."""

    max_ingest_rps: float = 0.0
    backlog: int = 0
    drain_deliveries_per_s: float = 0.0
    offered_rps: float = 0.0
    achieved_rps: float = 0.0  # 2xx answers/s while offering offered_rps: below it, the API could not keep up
    delivered: int = 0
    delivered_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    undelivered: int = 0
    stages: dict[str, tuple[float, float]] = {}  # bench/webhook_stages.py: stage -> (p50 ms, p99 ms)
    unavailable: str | None = None


def measure(postgres: EmbeddedPostgres, wrk: str, duration_s: int, warmup_s: int, logs: Path,
            rate: float | None = None) -> WebhookRecord:
    """Both measurements, on one database; a failure is recorded, not fatal. `rate`: the submissions/s
    offered for the delay (default: LOAD of the max ingest measured first)."""
    record = WebhookRecord()
    with EmbeddedRedis(logs / "webhooks-redis") as queue:
        url = database.create_database(postgres, "bench_webhooks")
        try:
            api_key = real_service.prepare(url)
            redis.Redis.from_url(queue.url()).flushall()
            env = {**real_service.service_env(url), "REDIS_URL": queue.url(), "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8"}
            _run_fast(_measure(record, url, api_key, env, wrk, duration_s, warmup_s, logs, rate))
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            record.unavailable = str(error).strip().splitlines()[0]
        finally:
            database.drop_database(postgres, "bench_webhooks")
    return record


async def _measure(record: WebhookRecord, url: str, api_key: str, env: dict[str, str], wrk: str,
                   duration_s: int, warmup_s: int, logs: Path, rate: float | None) -> None:
    port = free_port()
    receiver = RemoteArrivals(port)
    with running_server(receiver_argv(port), port=port, env={}, log_path=logs / "webhook-receiver.log"):
        await asyncio.to_thread(_add_endpoint, env, f"http://127.0.0.1:{port}/hooks")
        await asyncio.to_thread(_ingest, record, url, api_key, env, wrk, duration_s, warmup_s, logs)
        with running_workers(WORKERS, env, logs / "webhook-workers.log"):
            await _drain(record, receiver)
            api_port = free_port()
            with running_server(real_service.serve_argv(api_port, API_WORKERS), port=api_port, env=env,
                                log_path=logs / "webhook-serve.log"):
                await _delay(record, receiver, url, api_key, api_port, duration_s, warmup_s, rate)


def _add_endpoint(env: dict[str, str], target: str) -> None:
    subprocess.run([*real_service.intake_argv(), "webhooks", "add", "--business", real_service.BUSINESS_SLUG,
                    "--url", target, "--events", "consult.submitted"], cwd=REPO_ROOT, env=env, check=True,
                   capture_output=True, timeout=60)


def _ingest(record: WebhookRecord, url: str, api_key: str, env: dict[str, str], wrk: str, duration_s: int,
            warmup_s: int, logs: Path) -> None:
    port = free_port()
    target = f"http://127.0.0.1:{port}{real_service.SUBMISSIONS_PATH}"
    load = dict(api_key=api_key, target="real", workers=API_WORKERS)
    with running_server(real_service.serve_argv(port, API_WORKERS), port=port, env=env,
                        log_path=logs / "webhook-ingest.log"):
        run_wrk(wrk, target, duration_s=warmup_s, **load)
        ingest = run_wrk(wrk, target, duration_s=duration_s, **load)
    record.max_ingest_rps = ingest.rps
    record.backlog = database.count_events(url)


async def _drain(record: WebhookRecord, receiver: RemoteArrivals) -> None:
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while (arrived := await receiver.count()) < record.backlog and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    if arrived < record.backlog:
        raise RuntimeError(f"delivered {arrived}/{record.backlog} in {DRAIN_TIMEOUT_S}s")
    times = sorted((await receiver.arrivals()).values())
    record.drain_deliveries_per_s = round(len(times) / max(times[-1] - times[0], 1e-3), 1)


async def _delay(record: WebhookRecord, receiver: RemoteArrivals, url: str, api_key: str, port: int,
                 duration_s: int, warmup_s: int, rate: float | None) -> None:
    already = set(await receiver.arrivals())
    rate = rate or max(1.0, record.max_ingest_rps * LOAD)
    record.offered_rps = round(rate, 1)
    started = time.time()
    watcher = StageWatcher()
    watching = asyncio.create_task(watcher.watch(url))
    try:
        load = await measure_lag(host="127.0.0.1", port=port, path=real_service.SUBMISSIONS_PATH, api_key=api_key,
                                 database_url=url, projections=[], rate=rate, warmup_s=warmup_s, duration_s=duration_s)
        record.achieved_rps = load.achieved_rps
        conn = await asyncpg.connect(url)
        try:
            events = {r["id"]: (r["recorded"], r["committed"]) for r in await conn.fetch(COMMITTED_SQL, started + warmup_s)}
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            arrivals = await receiver.arrivals()
            while not arrivals.keys() >= events.keys() and time.monotonic() < deadline:
                await asyncio.sleep(0.25)
                arrivals = await receiver.arrivals()
            watcher.stop()
            await watching
            record.stages = await stage_delays(conn, watcher, events, arrivals)
        finally:
            await conn.close()
    finally:
        watcher.stop()
        await asyncio.gather(watching, return_exceptions=True)
    delays = [arrivals[i] - committed for i, (_, committed) in events.items() if i in arrivals]
    record.undelivered = len(events) - len(delays)
    record.delivered = len(delays)
    record.delivered_per_s = round(len([i for i in arrivals if i not in already]) / (warmup_s + duration_s), 1)
    if delays:
        record.p50_ms, record.p99_ms = percentile(delays, 50), percentile(delays, 99)
        record.max_ms = round(max(delays) * 1000, 2)


def valid(record: WebhookRecord) -> bool:
    """Every event delivered, and something measured."""
    return record.unavailable is None and record.undelivered == 0 and record.delivered > 0


def text(record: WebhookRecord) -> str:
    """The webhook part of the report."""
    if record.unavailable:
        return f"webhooks: unavailable ({record.unavailable})"
    return (f"webhooks: drain {record.drain_deliveries_per_s:,.1f} deliveries/s over a backlog of "
            f"{record.backlog:,} (max ingest {record.max_ingest_rps:,.1f} req/s, {WORKERS} workers); at "
            f"{record.offered_rps:,.1f} req/s offered ({record.offered_rps / max(record.max_ingest_rps, 1e-9):.0%}, "
            f"{record.achieved_rps:,.1f} achieved): "
            f"{record.delivered:,} delivered, commit→delivery "
            f"p50 {record.p50_ms:.1f} ms, p99 {record.p99_ms:.1f} ms, max {record.max_ms:.1f} ms "
            f"(target p99 ≤ 500 ms), {record.undelivered} undelivered"
            + "".join(f"\n  stage {stage}: p50 {p50:.1f} ms, p99 {p99:.1f} ms" for stage, (p50, p99) in record.stages.items()))

