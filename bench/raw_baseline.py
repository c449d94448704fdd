"""Baseline (a): how many submission-shaped transactions PostgreSQL itself commits."""

from __future__ import annotations

import re
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from bench.database import count_events
from bench.load import CONNECTIONS, THREADS
from bench.measurement import Measurement
from service.devstack import pg_bin

SCRIPT = Path(__file__).with_name("raw_submission.pgbench")
HANG_MARGIN_S = 60


class PgbenchFailed(RuntimeError):
    """pgbench did not finish its run."""


def run_pgbench(url: str, *, duration_s: int, script: Path = SCRIPT, clients: int = CONNECTIONS,
                target: str = "raw", count_rows: Callable[[str], int] = count_events) -> Measurement:
    """A time-bounded pgbench run of `script` (default: the submission script at 64 clients)."""
    rows_before = count_rows(url)
    with tempfile.TemporaryDirectory(prefix="bench-pgbench-") as logs:
        argv = [
            str(pg_bin("pgbench")), "-n", "-M", "prepared",
            "-c", str(clients), "-j", str(THREADS), "-T", str(duration_s),
            "-f", str(script), "-l", "--log-prefix", f"{logs}/tx", url,
        ]  # fmt: skip
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + HANG_MARGIN_S)
        latencies_us, failed = _read_transaction_logs(Path(logs))
    if done.returncode != 0 and not latencies_us:
        raise PgbenchFailed(f"{PgbenchFailed.__doc__}\n{done.stdout}\n{done.stderr}")
    return Measurement(
        target=target,
        workers=None,
        requests=len(latencies_us),
        duration_s=float(duration_s),
        rps=_tps(done.stdout),
        p50_ms=_percentile(latencies_us, 50) / 1000,
        p99_ms=_percentile(latencies_us, 99) / 1000,
        non2xx=failed + _aborted_clients(done.stdout + done.stderr),
        error_sample=(done.stderr.strip()[-300:] or None) if done.returncode else None,
        rows_written=count_rows(url) - rows_before,
    )


def _read_transaction_logs(directory: Path) -> tuple[list[int], int]:
    # Per-transaction log line: client_id transaction_no time script_no epoch_s epoch_us;
    # "time" is the latency in microseconds, or "failed"/"skipped" for a failure.
    latencies, failed = [], 0
    for log in directory.glob("tx*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            if len(fields) < 3:
                continue
            if fields[2].isdigit():
                latencies.append(int(fields[2]))
            else:
                failed += 1
    return sorted(latencies), failed


def _percentile(sorted_values: list[int], percent: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, round(percent / 100 * (len(sorted_values) - 1)))
    return float(sorted_values[index])


def _tps(report: str) -> float:
    found = re.search(r"^tps = ([\d.]+)", report, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _aborted_clients(report: str) -> int:
    return len(re.findall(r"client \d+ aborted", report))
