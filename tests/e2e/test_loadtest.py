"""`intake loadtest` against a running deployment (a real `intake serve` and `intake worker`): duplicates
come back as replays, exactly `unique` consultations exist, and a run whose answers are not all
created-or-replayed exits 2."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.support.servers import ApiProcess
from tests.support.workers import WorkerProcess


def loadtest(base_url: str, key: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", "loadtest", "--base-url", base_url,
                           "--business", "acme", "--key", key, "--seed", "7", *extra],
                          capture_output=True, text=True, timeout=120)


async def test_two_hundred_submissions_fifty_unique_make_fifty_consultations(settings, tenant, db, tmp_path):
    env = {"DATABASE_URL": settings.database_url or "", "REDIS_URL": settings.redis_url or ""}
    server, worker = ApiProcess(env, tmp_path / "api.log"), WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    server.start()
    try:
        done = loadtest(server.base_url, tenant.key, "--total", "200", "--unique", "50", "--concurrency", "50",
                        "--check")
        refused = loadtest(server.base_url, tenant.read_only_key, "--total", "5", "--unique", "5")
    finally:
        server.stop()
        worker.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert {k: result[k] for k in ("total", "unique", "created", "replayed", "other", "consultations")} == {
        "total": 200, "unique": 50, "created": 50, "replayed": 150, "other": 0, "consultations": 50}
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p99"]
    submitted = await db.fetchval("SELECT count(*) FROM events WHERE event_type = 'consult.submitted' "
                                  "AND payload->>'customer_id' LIKE $1", f"lt-{result['run']}-%")
    assert submitted == 50
    # A key that may not submit: every answer is a 403, which is neither created nor replayed.
    assert refused.returncode == 2
    assert json.loads(refused.stdout)["other"] == 5
