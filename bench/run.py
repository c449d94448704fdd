"""Benchmark the submission endpoint beside three baselines: `python -m bench.run [--quick]`.

(a) pgbench writing submission-shaped rows, (b) a naive Litestar + asyncpg endpoint,
(c) the same endpoint without a database, (d) the real service; (b)-(d) at 1 and 2
uvicorn workers, interleaved in rounds with (e) the eventsourcing library in-process
(bench/rounds.py). All share one durable PostgreSQL started for the run, as do the read-side parts:
`projections` (bench/projection.py), `rebuild` and `replay` (bench/rebuild.py, bench/replay.py).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import chaining, database, peer, projection, real_service, rebuild, replay, report, rounds, sealing, webhooks
from bench.load import CONNECTIONS, ensure_wrk, run_wrk
from bench.measurement import Measurement, unavailable
from bench.raw_baseline import run_pgbench
from bench.servers import running_server, uvicorn_argv
from service.devstack import EmbeddedPostgres, free_port

TARGETS = ("raw", "naive", "ceiling", "real", "plaintext", "peer", "projections", "rebuild", "replay", "seal",
           "webhooks", "chain")
# Connections the naive app holds in total, split across its workers: the same number of
# PostgreSQL backends at every worker count (32 per worker measured slower at 2 workers on
# 2 cores: more backends contend for the same CPUs).
NAIVE_POOL_TOTAL = 32
# The baselines take no key; the header is still sent so every target parses the same request.
UNUSED_KEY = "bench-baseline-takes-no-key"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=int, default=15, help="seconds per measurement (default 15)")
    parser.add_argument("--warmup", type=int, default=5, help="seconds of warm-up before each (default 5)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 s measurements, 1 s warm-ups")
    parser.add_argument("--workers", default="1,2", help="uvicorn worker counts (default 1,2)")
    parser.add_argument("--plaintext-log", action="store_true",
                        help="generate the rebuild/replay log with personal fields in clear, as before encryption")
    parser.add_argument("--events", type=int, default=1_000_000, help="generated log for rebuild/replay (1,000,000)")
    parser.add_argument("--rounds", type=int, default=2, help="rebuild/replay rounds, each beside its baseline (2)")
    parser.add_argument("--http-rounds", type=int, default=3, help="interleaved rounds of naive,ceiling,real,peer (3)")
    parser.add_argument("--webhook-rate", type=float, default=None,
                        help="webhooks: offer this many submissions/s instead of 50 %% of the measured max ingest "
                             "(a fixed load for A/B comparisons on a shared machine, where max ingest varies)")
    parser.add_argument("--only", default=",".join(TARGETS), help=f"subset of {','.join(TARGETS)}")
    options = parser.parse_args(argv)
    if options.quick:
        options.duration, options.warmup, options.rounds = 3, 1, 1
    options.workers = [int(w) for w in options.workers.split(",")]
    options.only = [t for t in options.only.split(",") if t]
    if unknown := set(options.only) - set(TARGETS):
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    return options


class Bench:
    """One run: the shared PostgreSQL, wrk, and the options every measurement uses."""

    def __init__(self, postgres: EmbeddedPostgres, wrk: str, options: argparse.Namespace, logs: Path):
        self.postgres, self.wrk, self.options, self.logs = postgres, wrk, options, logs

    def raw(self) -> Measurement:
        url = database.create_baseline_database(self.postgres, "bench_raw")
        database.reset_baseline_tables(url)
        run_pgbench(url, duration_s=self.options.warmup)
        database.reset_baseline_tables(url)
        try:
            return run_pgbench(url, duration_s=self.options.duration)
        finally:
            database.drop_database(self.postgres, "bench_raw")

    def ceiling(self, workers: int) -> Measurement:
        argv = uvicorn_argv("bench.naive_app:create_ceiling_app", (port := free_port()), workers)
        return self._http("ceiling", workers, argv, port, {}, UNUSED_KEY, None, lambda: None)

    def naive(self, workers: int, url: str) -> Measurement:
        database.reset_baseline_tables(url)
        argv = uvicorn_argv("bench.naive_app:create_naive_app", (port := free_port()), workers)
        env = {"DATABASE_URL": url, "BENCH_POOL_SIZE": str(NAIVE_POOL_TOTAL // workers)}
        reset = lambda: database.reset_baseline_tables(url)  # noqa: E731
        return self._http("naive", workers, argv, port, env, UNUSED_KEY, url, reset)

    def real(self, workers: int, *, encrypt: bool = True) -> Measurement:
        # A fresh database per worker count rather than a reset: the service's event log
        # refuses TRUNCATE (append-only trigger), and the harness need not know its tables.
        # `encrypt=False` is (d'), the same service keeping personal fields in clear (issue 11).
        target, name = ("real", f"bench_real_{workers}w") if encrypt else ("plaintext", f"bench_plain_{workers}w")
        url = database.create_database(self.postgres, name)
        api_key = real_service.prepare(url)
        argv = real_service.serve_argv((port := free_port()), workers)
        env = real_service.service_env(url, encrypt=encrypt)
        checkpoint = lambda: database.checkpoint(url)  # noqa: E731
        try:
            return self._http(target, workers, argv, port, env, api_key, url, checkpoint)
        finally:
            database.drop_database(self.postgres, name)

    def peer(self) -> Measurement:
        # A fresh database each round, as for (d): the peer's table starts empty every time.
        url = database.create_database(self.postgres, "bench_peer")
        try:
            return peer.measure(url, self.options.duration, self.options.warmup)
        finally:
            database.drop_database(self.postgres, "bench_peer")

    def _http(
        self, target: str, workers: int, argv: list[str], port: int, env: dict[str, str],
        api_key: str, database_url: str | None, after_warmup: Callable[[], None],
    ) -> Measurement:  # fmt: skip
        url = f"http://127.0.0.1:{port}{real_service.SUBMISSIONS_PATH}"
        log = self.logs / f"{target}-{workers}w.log"
        with running_server(argv, port=port, env=env, log_path=log):
            load = dict(api_key=api_key, target=target, workers=workers)
            run_wrk(self.wrk, url, duration_s=self.options.warmup, **load)
            after_warmup()
            rows_before = database.count_events(database_url) if database_url else 0
            measured = run_wrk(self.wrk, url, duration_s=self.options.duration, **load)
        if database_url:
            measured.rows_written = database.count_events(database_url) - rows_before
        return measured


def measure_all(bench: Bench) -> list[Measurement]:
    """(a) once, then b, c, d and the peer interleaved in rounds (bench/rounds.py); a failing
    measurement is recorded, not fatal."""
    only, workers = bench.options.only, bench.options.workers
    naive_url = database.create_baseline_database(bench.postgres, "bench_naive") if "naive" in only else ""
    measures: dict[str, Callable[[int | None], Measurement]] = {
        "raw": lambda _: bench.raw(), "naive": lambda w: bench.naive(w, naive_url),
        "ceiling": bench.ceiling, "real": bench.real, "peer": lambda _: bench.peer(),
        "plaintext": lambda w: bench.real(w, encrypt=False),
    }  # fmt: skip
    planned = [(None, "raw", None)] if "raw" in only else []
    planned += rounds.plan(only, workers, bench.options.http_rounds)
    # "projections" is measured apart: it is not one row of this table (bench/projection.py).
    results = []
    for number, target, count in planned:
        name = report.LABELS[target] + ("" if count is None else f" @{count}w")
        print(f"measuring {name}{'' if number is None else f' (round {number})'} ...", flush=True)
        try:
            measured = measures[target](count)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            reason = str(error).strip()
            prefix = "real service" if target == "real" else name
            print(f"{prefix}: unavailable ({reason})", flush=True)
            measured = unavailable(target, count, reason.splitlines()[0] if reason else "failed")
        measured.round = number
        results.append(measured)
    return results


LogRecords = tuple[rebuild.RebuildRecord | None, replay.ReplayRecord | None, sealing.SealRecord | None]


def measure_log(postgres: EmbeddedPostgres, options: argparse.Namespace, logs: Path) -> LogRecords:
    """The rebuild and replay targets, on one generated log; a failing part is recorded, not fatal.
    The seal target (bench/sealing.py) runs last on the same log: it adds events to it."""
    wanted = [t for t in ("replay", "rebuild", "seal") if t in options.only]
    if not wanted:
        return None, None, None
    print(f"generating a {options.events:,}-event log ...", flush=True)
    try:
        log = rebuild.prepare(postgres, options.events, sealed=not options.plaintext_log)
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        reason = str(error).strip().splitlines()[0]
        return (rebuild.RebuildRecord(events=0, unavailable=reason) if "rebuild" in wanted else None,
                replay.ReplayRecord(events=0, unavailable=reason) if "replay" in wanted else None,
                sealing.SealRecord(events=0, unavailable=reason) if "seal" in wanted else None)  # fmt: skip
    print(f"generated {log.events:,} events in {log.seconds:.0f} s", flush=True)
    replayed = rebuilt = sealed = None
    if "replay" in wanted:  # first: it reads only the log, and leaves the read models empty
        try:
            replayed = replay.measure_replay(log, options.rounds, logs)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            replayed = replay.ReplayRecord(events=log.events, unavailable=str(error).strip().splitlines()[0])
    if "rebuild" in wanted:
        try:
            rebuilt = rebuild.measure_rebuild(log, options.rounds, logs)
            rebuild.measure_api(rebuilt, log, options.duration, options.warmup, logs)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
            rebuilt = rebuilt or rebuild.RebuildRecord(events=log.events)
            rebuilt.unavailable = str(error).strip().splitlines()[0]
    if "seal" in wanted:
        sealed = _measure_sealing(log, logs)
    database.drop_database(postgres, rebuild.DATABASE)
    return rebuilt, replayed, sealed


def _measure_sealing(log: rebuild.Log, logs: Path) -> sealing.SealRecord:
    try:
        return sealing.measure_sealing(log, logs)
    except (RuntimeError, OSError, subprocess.TimeoutExpired, AssertionError) as error:
        return sealing.SealRecord(events=log.events, unavailable=str(error).strip().splitlines()[0])


def machine() -> dict[str, str | int]:
    return {
        "cpus": os.cpu_count() or 0,
        "platform": platform.platform(terse=True),
        "python": platform.python_version(),
    }


def run(options: argparse.Namespace, command: str) -> report.RunRecord:
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-") as workdir:
        postgres = database.start_postgres(Path(workdir) / "postgres")
        try:
            version = database.server_version(postgres.url())
            measurements = measure_all(Bench(postgres, wrk, options, Path(workdir)))
            projections = None
            if "projections" in options.only:
                projections = projection.measure(
                    postgres, wrk, options.workers, options.duration, options.warmup, Path(workdir))
            rebuilt, replayed, sealed = measure_log(postgres, options, Path(workdir))
            delivered = None
            if "webhooks" in options.only:
                print("measuring webhook deliveries ...", flush=True)
                delivered = webhooks.measure(postgres, wrk, options.duration, options.warmup, Path(workdir),
                                             rate=options.webhook_rate)
            chained = None
            if "chain" in options.only:  # bench/chaining.py: the hash chain's cost to submissions
                chained = chaining.measure(postgres, wrk, max(options.workers), options.duration, options.warmup,
                                           options.rounds, Path(workdir))
        finally:
            postgres.stop()
    return report.RunRecord(
        timestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        command=command,
        duration_s=options.duration,
        warmup_s=options.warmup,
        connections=CONNECTIONS,
        machine=machine(),
        postgres={"version": version, "durable": True, **database.SETTINGS},
        measurements=measurements,
        ratios=rounds.median_ratios(per_round := rounds.round_ratios(measurements, options.workers)),
        round_ratios=per_round,
        valid=all(m.valid for m in measurements) and (projections is None or projection.valid(projections))
        and (rebuilt is None or rebuild.valid(rebuilt)) and (replayed is None or replay.valid(replayed))
        and (sealed is None or sealing.valid(sealed))
        and (delivered is None or webhooks.valid(delivered))
        and (chained is None or chaining.valid(chained)),
        projections=projections,
        rebuild=rebuilt,
        replay=replayed,
        seal=sealed,
        webhooks=delivered,
        chain=chained,
    )


def print_record(record: report.RunRecord, saved: Path) -> None:
    print("\n" + report.text_table(record.measurements))
    if record.round_ratios:
        print("\n" + rounds.text(record.measurements, record.round_ratios, report.LABELS))
    for m in record.measurements:
        if m.unavailable is None and m.errors:
            print(f"\n!!! {report.LABELS[m.target]} @{m.workers}w had {m.errors} FAILED requests:"
                  f" this measurement is NOT a valid result. First failure: {m.error_sample}")  # fmt: skip
        if m.unavailable is None and m.unstored:
            print(f"\n!!! {report.LABELS[m.target]} @{m.workers}w acknowledged {m.unstored} submissions"
                  " that are not in the events table: NOT a valid result.")  # fmt: skip
    if record.projections is not None:
        print("\n" + projection.text(record.projections))
    if record.replay is not None:
        print("\n" + replay.text(record.replay))
    if record.rebuild is not None:
        print("\n" + rebuild.text(record.rebuild))
    if record.seal is not None:
        print("\n" + sealing.text(record.seal))
    if record.webhooks is not None:
        print("\n" + webhooks.text(record.webhooks))
    if record.chain is not None:
        print("\n" + chaining.text(record.chain))
    print(f"\nresult written to {saved}\n\n--- docs/PERFORMANCE.md snippet ---\n")
    print(report.markdown(record))


def main(argv: list[str] | None = None) -> int:
    """Entry point for `python -m bench.run` and `make bench`."""
    argv = sys.argv[1:] if argv is None else argv
    options = parse_args(argv)
    record = run(options, shlex.join(["python", "-m", "bench.run", *argv]))
    print_record(record, report.write_json(record))
    return 0 if record.valid else 1


if __name__ == "__main__":
    sys.exit(main())
