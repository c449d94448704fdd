"""Where a submission's CPU goes, sealed (d) against clear (d'): `python -m bench.cpu_split`.

For each round, worker count and target (the order alternating per round) it starts a fresh
database and `intake serve`, warms it up with the bench's wrk load, checkpoints, and then measures
one wrk run, taking before and after it:

- the CPU seconds (user + system, /proc via psutil) of the `intake serve` process tree (the API)
  and of PostgreSQL's client backends and of its other processes, each ÷ requests answered: unlike
  req/s, CPU per request hardly moves when neighbours load the machine;
- WAL bytes per request (pg_current_wal_lsn), and from pg_stat_statements (loaded in this run's
  own PostgreSQL) the append statement's calls per request (requests per group-commit batch is its
  inverse), buffer hits and execution time per request;
- pg_stat_activity every 20 ms: the client backends active, by wait event (mean count per sample),
  which shows lock waits (Lock:…, LWLock:…) next to CPU and WAL flushes.

It prints one line per measurement and the medians of the per-request figures per target.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import psycopg

from bench import database, real_service
from bench.load import ensure_wrk, run_wrk
from bench.servers import running_server
from service.devstack import EmbeddedPostgres, free_port

SETTINGS = {**database.SETTINGS, "shared_preload_libraries": "pg_stat_statements"}
SAMPLE_S = 0.02
WAITS = ("SELECT coalesce(wait_event_type, 'CPU') || ':' || coalesce(wait_event, '-') FROM pg_stat_activity "
         "WHERE state = 'active' AND backend_type = 'client backend' AND pid <> pg_backend_pid()")
APPEND = ("SELECT coalesce(sum(calls), 0), coalesce(sum(shared_blks_hit), 0), coalesce(sum(total_exec_time), 0) "
          "FROM pg_stat_statements WHERE query LIKE '%INSERT INTO patient_keys%' "
          "AND dbid = (SELECT oid FROM pg_database WHERE datname = current_database())")
TARGETS = {"sealed": True, "clear": False}
# With --against TREE: this tree against another copy of the code (both sealed), which runs with that
# tree first on PYTHONPATH, for its migrations as for `intake serve`.
AGAINST = {"base": True, "this": True}


def _cpu(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _postgres_cpu(postmaster: psutil.Process) -> tuple[float, float]:
    """CPU seconds of the client backends, and of every other PostgreSQL process."""
    backends, others = [], [postmaster]
    for child in postmaster.children():
        try:
            (backends if "127.0.0.1" in " ".join(child.cmdline()) else others).append(child)
        except psutil.NoSuchProcess:
            continue
    return _cpu(backends), _cpu(others)


def _snapshot(url: str, api_pid: int, postmaster: psutil.Process) -> dict[str, float]:
    api = psutil.Process(api_pid)
    backends, others = _postgres_cpu(postmaster)
    with psycopg.connect(url, autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()[0]
        calls, hits, exec_ms = conn.execute(APPEND).fetchone()
    return {"api": _cpu([api, *api.children(recursive=True)]), "pg": backends, "pg_other": others,
            "wal": float(lsn), "calls": float(calls), "hits": float(hits), "exec_ms": float(exec_ms)}


def _sample_waits(url: str, stop: threading.Event, seen: collections.Counter[str]) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        while not stop.is_set():
            seen.update(row[0] for row in conn.execute(WAITS).fetchall())
            seen["_samples"] += 1
            time.sleep(SAMPLE_S)


def measure(postgres: EmbeddedPostgres, postmaster: psutil.Process, target: str, workers: int,
            options: argparse.Namespace, logs: Path) -> dict[str, object]:
    """One measurement of one target; see the module docstring."""
    saved = os.environ.get("PYTHONPATH")
    if target == "base":
        os.environ["PYTHONPATH"] = options.against  # inherited by `intake` (service_env copies os.environ)
    try:
        return _measure(postgres, postmaster, target, workers, options, logs)
    finally:
        if target == "base" and saved is None:
            del os.environ["PYTHONPATH"]
        elif target == "base":
            os.environ["PYTHONPATH"] = saved


def _measure(postgres: EmbeddedPostgres, postmaster: psutil.Process, target: str, workers: int,
             options: argparse.Namespace, logs: Path) -> dict[str, object]:
    name = f"split_{target}_{workers}w"
    url = database.create_database(postgres, name)
    try:
        api_key = real_service.prepare(url)
        database.psql(url, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        port = free_port()
        endpoint = f"http://127.0.0.1:{port}{real_service.SUBMISSIONS_PATH}"
        load = dict(api_key=api_key, target=target, workers=workers)
        env = real_service.service_env(url, encrypt={**TARGETS, **AGAINST}[target])
        with running_server(real_service.serve_argv(port, workers), port=port, env=env,
                            log_path=logs / f"{name}.log") as server:
            run_wrk(options.wrk, endpoint, duration_s=options.warmup, **load)
            database.checkpoint(url)
            before = _snapshot(url, server.pid, postmaster)
            stop, seen = threading.Event(), collections.Counter()
            sampler = threading.Thread(target=_sample_waits, args=(postgres.url(), stop, seen))
            sampler.start()
            try:
                measured = run_wrk(options.wrk, endpoint, duration_s=options.duration, **load)
            finally:
                stop.set()
                sampler.join()
            after = _snapshot(url, server.pid, postmaster)
    finally:
        database.drop_database(postgres, name)
    n = max(measured.requests, 1)
    per = {key: (after[key] - before[key]) / n for key in before}
    samples = max(seen.pop("_samples"), 1)
    return {"target": target, "workers": workers, "rps": measured.rps, "non2xx": measured.non2xx,
            "api_us": per["api"] * 1e6, "pg_us": per["pg"] * 1e6, "pg_other_us": per["pg_other"] * 1e6,
            "wal_b": per["wal"], "per_batch": 1 / per["calls"] if per["calls"] else 0.0,
            "hits": per["hits"], "exec_us": per["exec_ms"] * 1e3,
            "waits": {wait: count / samples for wait, count in seen.most_common(6)},
            "load": psutil.getloadavg()[0]}


def line(row: dict[str, object]) -> str:
    waits = ", ".join(f"{wait} {mean:.2f}" for wait, mean in row["waits"].items())  # type: ignore[union-attr]
    return (f"{row['target']:6} {row['workers']}w {row['rps']:7,.0f} req/s  API {row['api_us']:4.0f} µs  "
            f"PG backends {row['pg_us']:4.0f} µs (others {row['pg_other_us']:3.0f})  WAL {row['wal_b']:5.0f} B  "
            f"req/batch {row['per_batch']:4.1f}  append: {row['hits']:4.1f} hits, {row['exec_us']:4.0f} µs  "
            f"load {row['load']:.1f}  non-2xx {row['non2xx']}\n        active backends: {waits}")


def summary(rows: list[dict[str, object]], targets: dict[str, bool]) -> str:
    keys = ("rps", "api_us", "pg_us", "wal_b", "per_batch", "hits", "exec_us")
    out = ["medians per request:  target workers  " + "  ".join(keys)]
    for workers in sorted({r["workers"] for r in rows}):  # type: ignore[type-var]
        for target in targets:
            mine = [r for r in rows if r["target"] == target and r["workers"] == workers]
            if mine:
                medians = [statistics.median(float(r[k]) for r in mine) for k in keys]  # type: ignore[arg-type]
                out.append(f"  {target:6} {workers}w  " + "  ".join(f"{m:,.1f}" for m in medians))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cpu_split", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--duration", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--against", metavar="TREE", help="compare with the code in TREE (both sealed)")
    options = parser.parse_args(sys.argv[1:] if argv is None else argv)
    targets = AGAINST if options.against else TARGETS
    options.wrk = ensure_wrk()
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-split-") as workdir:
        postgres = EmbeddedPostgres(Path(workdir) / "postgres", durable=True, settings=SETTINGS)
        postgres.start()
        try:
            postmaster = psutil.Process(int((Path(workdir) / "postgres" / "postmaster.pid").read_text().split()[0]))
            for round_no in range(options.rounds):
                order = list(targets) if round_no % 2 == 0 else list(targets)[::-1]
                for workers in (int(w) for w in options.workers.split(",")):
                    for target in order:
                        rows.append(measure(postgres, postmaster, target, workers, options, Path(workdir)))
                        print(line(rows[-1]), flush=True)
        finally:
            postgres.stop()
    print(summary(rows, targets))
    return 0


if __name__ == "__main__":
    sys.exit(main())
