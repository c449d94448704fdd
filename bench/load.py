"""Drive an HTTP target with wrk and read back the line fresh_keys.lua prints."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from pathlib import Path

import msgspec

from bench.measurement import Measurement

SCRIPT = Path(__file__).with_name("fresh_keys.lua")
THREADS = 2
CONNECTIONS = 64
RESULT_PREFIX = "BENCH_RESULT "
# wrk stops itself after -d; this margin only catches a wrk that hangs.
HANG_MARGIN_S = 30
APT_TIMEOUT_S = 600


class WrkUnavailable(SystemExit):
    """wrk is not installed and could not be installed with apt-get; install it (`apt-get install wrk`) and rerun."""


class WrkFailed(RuntimeError):
    """wrk exited without printing its BENCH_RESULT line."""


def ensure_wrk() -> str:
    """Path to wrk, installing the Debian package if it is missing."""
    found = shutil.which("wrk")
    if found:
        return found
    apt = shutil.which("apt-get")
    if apt is None:
        raise WrkUnavailable(f"{WrkUnavailable.__doc__} (no apt-get on this machine)")
    print("wrk not found: installing it with apt-get", flush=True)
    # A stale package index is the usual reason an install fails, so update once and retry.
    for attempt in ([[apt, "install", "-y", "wrk"]], [[apt, "update"], [apt, "install", "-y", "wrk"]]):
        if all(_quiet(argv) for argv in attempt) and shutil.which("wrk"):
            return shutil.which("wrk")
    raise WrkUnavailable(WrkUnavailable.__doc__)


def _quiet(argv: list[str]) -> bool:
    try:
        done = subprocess.run(argv, capture_output=True, timeout=APT_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def run_wrk(
    wrk: str,
    url: str,
    *,
    duration_s: int,
    api_key: str,
    target: str,
    workers: int,
    connections: int = CONNECTIONS,
) -> Measurement:
    """One time-bounded wrk run posting fresh submissions to `url`."""
    nonce = uuid.uuid4().hex[:12]  # keeps Idempotency-Keys unique across runs
    argv = [
        wrk, f"-t{THREADS}", f"-c{connections}", f"-d{duration_s}s", "--latency",
        "--timeout", "10s",
        "-H", "Content-Type: application/json",
        "-H", f"Authorization: Bearer {api_key}",
        "-s", str(SCRIPT), url, "--", nonce,
    ]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration_s + HANG_MARGIN_S
    )
    for line in done.stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            fields = msgspec.json.decode(line.removeprefix(RESULT_PREFIX))
            return Measurement(target=target, workers=workers, **fields)
    raise WrkFailed(f"{WrkFailed.__doc__}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}")
