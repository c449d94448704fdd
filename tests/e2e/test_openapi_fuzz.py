"""schemathesis fuzzes every operation of the served OpenAPI document against the real `intake serve`
and `intake worker` (valid and invalid bodies, headers and query values, from the schemas
service/http/openapi.py publishes): no answer may be a 500. A 503 is a documented answer (a read
that waited out its 2 s for the projector on a busy machine), so the fuzzer lets it pass and this
test counts it instead: problem+json, rare. Bounded: a fixed seed, a few dozen cases per
operation, a time budget, loopback only."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx

from service import admin
from tests.support.servers import ApiProcess
from tests.support.workers import WorkerProcess

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
MAX_EXAMPLES = 30  # per operation and phase; 11 operations
# One schemathesis worker: with two threads, hypothesis's ast.parse calls race in CPython 3.11 before
# 3.11.8 (the AST recursion depth was not per thread, gh-106905) and fail the run with a SystemError
# about "AST constructor recursion depth mismatch" that has nothing to do with the API.
TIME_BUDGET_S = 45


def fuzz_config(tmp_path: Path, base_url: str, admin_key: str) -> Path:
    """The run's settings: the admin key (every scope, every business) and the one business that exists,
    so cases reach the handlers rather than stopping at 403/404."""
    config = tmp_path / "schemathesis.toml"
    config.write_text("\n".join([
        f'base-url = "{base_url}"',
        f'headers = {{ Authorization = "Bearer {admin_key}" }}',
        "[parameters]",
        '"path.slug" = "acme"',
        "[checks.not_a_server_error]",
        "expected-statuses = [\"2XX\", \"3XX\", \"4XX\", 503]",
        "",
    ]))
    return config


async def test_no_generated_request_gets_a_server_error(settings, tenant, db, tmp_path):
    admin_key = (await admin.create_key(db, business=None, scopes=[], admin=True)).key
    env = {"DATABASE_URL": settings.database_url or "", "REDIS_URL": settings.redis_url or ""}
    server, worker = ApiProcess(env, tmp_path / "api.log"), WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    server.start()
    try:
        assert len(httpx.get(server.base_url + "/schema/openapi.json").json()["paths"]) >= 10
        done = subprocess.run(
            [str(SCHEMATHESIS), "--config-file", str(fuzz_config(tmp_path, server.base_url, admin_key)), "run",
             server.base_url + "/schema/openapi.json", "--checks", "not_a_server_error", "--mode", "all",
             "--max-examples", str(MAX_EXAMPLES), "--seed", "20261202", "--max-time", str(TIME_BUDGET_S),
             "--workers", "1", "--request-timeout", "10", "--no-color", "--report", "ndjson",
             "--report-dir", str(tmp_path / "report"), "--generation-database", "none", "--generation-allow-x00", "true"],
            capture_output=True, text=True, timeout=TIME_BUDGET_S + 120, cwd=tmp_path)
    finally:
        server.stop()
        worker.stop()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    statuses = [json.loads(line) for line in server.log_tail(10**8).splitlines()
                if line.startswith("{") and '"http.request"' in line]
    assert len(statuses) > 200, "the fuzzer sent too few requests to mean anything"
    assert [s for s in statuses if s["status"] >= 500 and s["status"] != 503] == []
    assert len([s for s in statuses if s["status"] == 503]) <= len(statuses) // 100
