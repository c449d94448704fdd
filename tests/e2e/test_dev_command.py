"""`intake dev` from nothing: embedded PostgreSQL and Redis, a printed key that works, projections
that materialize, and a clean stop on SIGTERM within the grace period."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from service.devstack import free_port
from tests.support.deployment import SESSION_KEYS
from tests.support.payloads import headers, submission

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 90.0  # first start: initdb, migrations, Redis, API and worker
STOP_TIMEOUT_S = 15.0  # how long we wait for SIGTERM to end it before failing
GRACE_S = 10.0  # it must be gone well within this (SHUTDOWN_GRACE_MS is 3 s)
POLL_S = 0.1


def test_intake_dev_runs_everything_and_stops_cleanly(tmp_path):
    port = free_port()
    log_path = tmp_path / "dev.log"
    with log_path.open("w+b") as log, running_dev(tmp_path / "state", port, log) as process:
        deadline = time.monotonic() + START_TIMEOUT_S
        key = printed_key(process, log_path, deadline)
        assert b"curl -sS -X POST" in log_path.read_bytes()
        assert_the_app_runs_as_its_own_role_and_no_password_is_printed(log_path, tmp_path / "state")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            wait_until_live(client, deadline)
            assert_a_submission_reads_back_pending(client, key)
        assert_sigterm_stops_it_within_the_grace_period(process)
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "state")], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "a server outlived intake dev"


@contextlib.contextmanager
def running_dev(state_dir: Path, port: int, log: IO[bytes]) -> Iterator[subprocess.Popen[bytes]]:
    """`intake dev` as a child process with no DATABASE_URL or REDIS_URL and none of the keys a deployment
    configures (it makes its own), killed if the test leaves it running."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", *SESSION_KEYS)}
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "dev", "--port", str(port), "--state-dir", str(state_dir)],
        cwd=ROOT, env={**env, "SHUTDOWN_GRACE_MS": "3000", "LOG_FORMAT": "json"}, stdout=log, stderr=log)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=STOP_TIMEOUT_S)


def printed_key(process: subprocess.Popen[bytes], log_path: Path, deadline: float) -> str:
    """The API key `intake dev` prints once, read from its output as soon as it appears."""
    while time.monotonic() < deadline and process.poll() is None:
        if key_line := re.search(rb"\(shown once\): (ik_\S+)", log_path.read_bytes()):
            return key_line[1].decode()
        time.sleep(POLL_S)
    pytest.fail(f"no key printed: {log_path.read_text(errors='replace')[-3000:]}")


def wait_until_live(client: httpx.Client, deadline: float) -> None:
    """Poll /livez until it answers 200."""
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if client.get("/livez").status_code == 200:
                return
        time.sleep(POLL_S)
    pytest.fail("intake dev's API never became live")


def assert_a_submission_reads_back_pending(client: httpx.Client, key: str) -> None:
    """The printed key submits, and the projections materialize it (read with min_position)."""
    created = client.post("/v1/businesses/demo/consult-submissions", json=submission(), headers=headers(key))
    assert created.status_code == 202, created.text
    url = f"/v1/businesses/demo/consultations/{created.json()['consultation_id']}"
    view = client.get(url, params={"min_position": created.json()["position"]},
                      headers={"Authorization": f"Bearer {key}"})
    assert view.status_code == 200 and view.json()["status"] == "pending", view.text


def assert_the_app_runs_as_its_own_role_and_no_password_is_printed(log_path: Path, state_dir: Path) -> None:
    """The banner names both connections: the app's role for the API and workers, the owner for migrations."""
    banner = log_path.read_text(errors="replace")
    assert re.search(r"Database:  postgresql://intake_app_login:\*\*\*@127\.0\.0\.1:\d+/", banner), banner[-3000:]
    assert re.search(r"Owner:     postgresql://postgres@127\.0\.0\.1:\d+/", banner), banner[-3000:]
    assert "owner rights" not in banner and "could alter the event log" not in banner
    assert (state_dir / "app-role.password").read_text().strip() not in banner
    # Made once (seals, data keys' KEK, partner and webhook secrets), private, never printed.
    for made in ("seal.key", "key-encryption-key", "secrets.key"):
        key = state_dir / made
        assert key.stat().st_mode & 0o077 == 0 and key.read_text().strip() not in banner, made


def assert_sigterm_stops_it_within_the_grace_period(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM ends it with status 0, well within the grace period."""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=STOP_TIMEOUT_S) == 0
    assert time.monotonic() - started < GRACE_S
