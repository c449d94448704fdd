"""What the hash chain costs the write path (docs/INTEGRITY.md): submission throughput of the real
service with the `events_chain` trigger on, beside the same service on a database where the bench,
as the tables' owner, turned it off. Target: on ≥ 0.9 × off.

Two fresh databases, prepared alike; the trigger-off one also lets `hash` be NULL (the trigger is what
fills it). Rounds interleave the two, the order alternating, so a slow spell of the shared machine
lands on both: the ratio is taken per round, and the median of the rounds' ratios is the result.
Each measurement starts its own `intake serve` and, like target (d), runs wrk after a warm-up and a
checkpoint; a measurement with failed or unstored requests makes the record invalid.
"""

from __future__ import annotations

import statistics
import subprocess
from pathlib import Path

import msgspec

from bench import database, real_service
from bench.load import run_wrk
from bench.measurement import Measurement
from bench.servers import running_server
from service.devstack import EmbeddedPostgres, free_port

TARGET_RATIO = 0.9
DATABASES = {True: "bench_chain_on", False: "bench_chain_off"}
# The trigger off, as an owner may (bench only): without it nothing fills `hash`, so it must allow NULL.
CHAIN_OFF = "ALTER TABLE events DISABLE TRIGGER events_chain; ALTER TABLE events ALTER COLUMN hash DROP NOT NULL"


class ChainRound(msgspec.Struct, kw_only=True):
    on_rps: float
    off_rps: float
    ratio: float
    first: str  # "on" or "off": which ran first in this round


class ChainRecord(msgspec.Struct, kw_only=True):
    workers: int
    duration_s: int = 0
    rounds: list[ChainRound] = []
    on_rps: float = 0.0  # medians
    off_rps: float = 0.0
    ratio: float = 0.0  # the median of the rounds' ratios
    invalid: list[str] = []  # measurements with failed or unstored requests
    chained_rows: str = ""  # rows with a hash, on / off: the trigger really was on and off
    unavailable: str | None = None


def measure(postgres: EmbeddedPostgres, wrk: str, workers: int, duration_s: int, warmup_s: int, rounds: int,
            logs: Path) -> ChainRecord:
    """Interleaved rounds, chain on and off; a failure is recorded, not fatal."""
    record = ChainRecord(workers=workers, duration_s=duration_s)
    try:
        urls = {on: database.create_database(postgres, name) for on, name in DATABASES.items()}
        keys = {on: real_service.prepare(url) for on, url in urls.items()}
        database.psql(urls[False], CHAIN_OFF)
        for n in range(rounds):
            order = (True, False) if n % 2 == 0 else (False, True)
            print(f"measuring chain round {n + 1}/{rounds} ({'on, off' if order[0] else 'off, on'}) ...", flush=True)
            rps = {on: _submissions(record, wrk, urls[on], keys[on], on, warmup_s, logs) for on in order}
            record.rounds.append(ChainRound(on_rps=rps[True], off_rps=rps[False], first="on" if order[0] else "off",
                                            ratio=round(rps[True] / rps[False], 3) if rps[False] else 0.0))
        record.chained_rows = " / ".join(_chained(urls[on]) for on in (True, False))
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        record.unavailable = str(error).strip().splitlines()[0]
    finally:
        for name in DATABASES.values():
            database.drop_database(postgres, name)
    if record.rounds:
        record.on_rps = round(statistics.median(r.on_rps for r in record.rounds), 0)
        record.off_rps = round(statistics.median(r.off_rps for r in record.rounds), 0)
        record.ratio = round(statistics.median(r.ratio for r in record.rounds), 3)
    return record


def _submissions(record: ChainRecord, wrk: str, url: str, api_key: str, on: bool, warmup_s: int, logs: Path) -> float:
    """One measurement of `intake serve` on `url`: wrk's requests/s; an invalid one is noted on the record."""
    port = free_port()
    target = f"chain {'on' if on else 'off'}"
    argv = real_service.serve_argv(port, record.workers)
    with running_server(argv, port=port, env=real_service.service_env(url),
                        log_path=logs / f"chain-{'on' if on else 'off'}.log"):
        endpoint = f"http://127.0.0.1:{port}{real_service.SUBMISSIONS_PATH}"
        load = dict(api_key=api_key, target=target, workers=record.workers)
        run_wrk(wrk, endpoint, duration_s=warmup_s, **load)
        database.checkpoint(url)
        before = database.count_events(url)
        measured: Measurement = run_wrk(wrk, endpoint, duration_s=record.duration_s, **load)
    measured.rows_written = database.count_events(url) - before
    if not measured.valid:
        record.invalid.append(f"{target}: {measured.errors} failed, {measured.unstored} unstored")
    return round(measured.rps, 1)


def _chained(url: str) -> str:
    return database.psql(url, "SELECT count(hash) || ' of ' || count(*) FROM events")


def valid(record: ChainRecord) -> bool:
    return record.unavailable is None and bool(record.rounds) and not record.invalid


def text(record: ChainRecord) -> str:
    if record.unavailable:
        return f"chain: unavailable: {record.unavailable}"
    rounds = "; ".join(f"{r.on_rps:,.0f} / {r.off_rps:,.0f} = {r.ratio:.2f} ({r.first} first)" for r in record.rounds)
    met = "met" if record.ratio >= TARGET_RATIO else "MISSED"
    lines = [f"submissions with the hash chain on / off @{record.workers}w, {record.duration_s} s each: "
             f"median {record.on_rps:,.0f} / {record.off_rps:,.0f} req/s; ratio per round: {rounds}",
             f"target: chain on ≥ {TARGET_RATIO} × off: median ratio {record.ratio:.2f} {met}; "
             f"rows with a hash (on / off): {record.chained_rows}"]
    if record.invalid:
        lines.append("INVALID: " + "; ".join(record.invalid))
    return "\n".join(lines)


def markdown(record: ChainRecord) -> str:
    return "\n".join(["#### Hash chain on the write path", "", *(f"- {line}" for line in text(record).splitlines())])
