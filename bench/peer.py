"""The peer: the eventsourcing library's PostgreSQL recorder, appending one-event aggregates in-process.

The best Python event store we know of, in its fastest configuration: psycopg 3 (binary), its
pooled PostgreSQL recorder with its database functions, 16 threads saving new aggregates of one
submission-shaped event each: no HTTP, no idempotency record, no outbox row, no authorization.
Every run prints "intake over HTTP ÷ eventsourcing in-process" from it (bench/rounds.py).

Run as a child of the harness (`python -m bench.peer URL DURATION WARMUP`), so its 16 threads
compete with PostgreSQL for the cores, never with the harness; it prints one BENCH_RESULT line.
Needs the optional `bench` extra: `pip install -e '.[bench]'`.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from urllib.parse import urlsplit

import msgspec

from bench.load import RESULT_PREFIX
from bench.measurement import Measurement, percentile

THREADS = 16
TARGET = "peer"
APPLICATION = "BenchIntake"  # its table: benchintake_events
HANG_MARGIN_S = 60


class PeerUnavailable(RuntimeError):
    """The eventsourcing peer could not run (is the `bench` extra installed?)."""


def measure(url: str, duration_s: int, warmup_s: int) -> Measurement:
    """Run the peer against the database at `url` in a child process; its measurement."""
    argv = [sys.executable, "-m", "bench.peer", url, str(duration_s), str(warmup_s)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + warmup_s + HANG_MARGIN_S)
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return msgspec.json.decode(line.removeprefix(RESULT_PREFIX), type=Measurement)
    detail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    raise PeerUnavailable(f"{PeerUnavailable.__doc__}: {detail}")


def _application(url: str):  # -> eventsourcing.application.Application
    from eventsourcing.application import Application

    parts = urlsplit(url)
    env = {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_DBNAME": parts.path.lstrip("/"), "POSTGRES_HOST": parts.hostname or "127.0.0.1",
        "POSTGRES_PORT": str(parts.port or 5432), "POSTGRES_USER": parts.username or "postgres",
        "POSTGRES_PASSWORD": parts.password or "",
        "POSTGRES_POOL_SIZE": str(THREADS), "POSTGRES_MAX_OVERFLOW": "0",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "y", "CREATE_TABLE": "y",
    }  # fmt: skip
    return type(APPLICATION, (Application,), {})(env=env)


def _submission_class():
    from eventsourcing.domain import Aggregate, event

    class Submission(Aggregate):
        """One consult submission: an aggregate of exactly one event, as intake's slot streams begin."""

        @event("Submitted")
        def __init__(self, customer_id: str, product_id: str, patient: dict, chief_complaint: str,
                     answers: list) -> None:  # fmt: skip
            self.customer_id, self.product_id, self.patient = customer_id, product_id, patient
            self.chief_complaint, self.answers = chief_complaint, answers

    return Submission


def _worker(app, submission, until: float, latencies: list[float], failures: list[str]) -> None:
    patient = {"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com",
               "phone": "+15555550100", "date_of_birth": "1990-01-01"}  # fmt: skip
    answers = [{"question_id": "q1", "answer": "no"}, {"question_id": "q2", "answer": "sometimes"}]
    while (started := time.perf_counter()) < until:
        try:
            app.save(submission(f"cus_{uuid.uuid4().hex}", "prod_1", patient, "Headache for three days", answers))
        except Exception as error:  # noqa: BLE001  # counted and reported, like wrk's non-2xx
            failures.append(f"{type(error).__name__}: {error}")
            continue
        latencies.append(time.perf_counter() - started)


def _drive(app, submission, seconds: float) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []  # list.append is atomic under the GIL: one list for all threads
    failures: list[str] = []
    until = time.perf_counter() + seconds
    threads = [threading.Thread(target=_worker, args=(app, submission, until, latencies, failures))
               for _ in range(THREADS)]  # fmt: skip
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, failures, time.perf_counter() - started


def _stored_events(app) -> int:
    with app.recorder.datastore.transaction(commit=False) as curs:
        curs.execute(f"SELECT count(*) FROM {APPLICATION.lower()}_events")  # noqa: S608  # our own constant
        return curs.fetchone()["count"]


def run(url: str, duration_s: int, warmup_s: int) -> Measurement:
    """Warm up, then measure `duration_s` of 16 threads saving one-event aggregates."""
    app, submission = _application(url), _submission_class()
    try:
        _drive(app, submission, warmup_s)
        before = _stored_events(app)
        latencies, failures, elapsed = _drive(app, submission, duration_s)
        rows = _stored_events(app) - before
    finally:
        app.close()
    return Measurement(
        target=TARGET, workers=None, requests=len(latencies) + len(failures), duration_s=round(elapsed, 3),
        rps=len(latencies) / elapsed, p50_ms=percentile(latencies, 50) if latencies else 0.0,
        p99_ms=percentile(latencies, 99) if latencies else 0.0, non2xx=len(failures),
        error_sample=failures[0] if failures else None, rows_written=rows,
    )  # fmt: skip


if __name__ == "__main__":
    measured = run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
    print(RESULT_PREFIX + msgspec.json.encode(measured).decode(), flush=True)
