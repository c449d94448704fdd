"""`intake dev` from nothing: embedded PostgreSQL and Redis, a printed key that works, projections
that materialize, and a clean stop on SIGTERM within the grace period."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from service.devstack import free_port
from tests.support.payloads import headers, submission

ROOT = Path(__file__).resolve().parents[2]


def test_intake_dev_runs_everything_and_stops_cleanly(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    log = (tmp_path / "dev.log").open("w+b")
    process = subprocess.Popen(
        [sys.executable, "-m", "service.cli", "dev", "--port", str(port), "--state-dir", str(tmp_path / "state")],
        cwd=ROOT, env={**env, "SHUTDOWN_GRACE_MS": "3000", "LOG_FORMAT": "json"}, stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 90
        key = None
        while key is None and time.monotonic() < deadline and process.poll() is None:
            key_line = re.search(rb"\(shown once\): (ik_\S+)", (tmp_path / "dev.log").read_bytes())
            key = key_line[1].decode() if key_line else None
            time.sleep(0.1)
        assert key, (tmp_path / "dev.log").read_text()[-3000:]
        assert b"curl -sS -X POST" in (tmp_path / "dev.log").read_bytes()
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            while time.monotonic() < deadline:
                try:
                    if client.get("/livez").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            created = client.post("/v1/businesses/demo/consult-submissions", json=submission(), headers=headers(key))
            assert created.status_code == 202, created.text
            url = f"/v1/businesses/demo/consultations/{created.json()['consultation_id']}"
            view = client.get(url, params={"min_position": created.json()["position"]},
                              headers={"Authorization": f"Bearer {key}"})
            assert view.status_code == 200 and view.json()["status"] == "pending", view.text

        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=15) == 0
        assert time.monotonic() - started < 10
        leftovers = subprocess.run(["pgrep", "-f", str(tmp_path / "state")], capture_output=True, text=True)
        assert leftovers.stdout.strip() == "", "a server outlived intake dev"
    finally:
        if process.poll() is None:
            process.kill()
        log.close()
