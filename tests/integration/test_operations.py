"""Operations endpoints, request ids, the canonical log line, and what never leaks into logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.support.payloads import headers, submission
from tests.support.servers import ApiProcess, running_api

ROOT = Path(__file__).resolve().parents[2]
URL = "/v1/businesses/acme/consult-submissions"


async def test_livez_readyz_metrics_and_openapi(settings, tenant):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        assert (await client.get("/livez")).status_code == 200
        ready = await client.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "schema": "ok"}
        await client.post(URL, json=submission(), headers=headers(tenant.key))
        metrics = (await client.get("/metrics")).text
        assert 'intake_events_appended_total{event_type="consult.submitted"} 1.0' in metrics
        assert "intake_outbox_backlog 1.0" in metrics
        assert 'route="/v1/businesses/{slug}/consult-submissions"' in metrics
        openapi = (await client.get("/schema/openapi.json")).json()
        assert "/v1/businesses/{slug}/consult-submissions" in openapi["paths"]


async def test_readyz_names_a_schema_that_is_not_current(settings, tenant, db):
    await db.execute("UPDATE schema_migrations SET checksum = 'x' WHERE version = 1")
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503 and "changed since applied" in ready.json()["checks"]["schema"]


async def test_request_id_is_echoed_or_generated_and_unknown_routes_are_problems(settings, tenant):
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        echoed = await client.get("/livez", headers={"X-Request-ID": "abc-123"})
        generated = await client.get("/nowhere")
    assert echoed.headers["x-request-id"] == "abc-123"
    assert len(generated.headers["x-request-id"]) == 32
    assert generated.status_code == 404 and generated.headers["content-type"] == "application/problem+json"


async def test_one_json_log_line_per_request_and_no_patient_data_in_logs(settings, tenant, tmp_path):
    log_path = tmp_path / "api.log"
    server = ApiProcess({"DATABASE_URL": settings.database_url}, log_path)
    server.start()
    secret = submission(customer_id="cus_SECRET42", patient={
        "first_name": "Zebulon", "last_name": "Quixote", "email": "zq@example.org", "phone": "+15555550199",
        "date_of_birth": "1980-01-01"}, chief_complaint="very private complaint")
    bad = {**secret, "patient": {**secret["patient"], "email": "not-an-email-Zebulon"}}
    try:
        async with httpx.AsyncClient(base_url=server.base_url) as client:
            ok = await client.post(URL, json=secret, headers={**headers(tenant.key), "X-Request-ID": "rid-ok"})
            rejected = await client.post(URL, json=bad, headers={**headers(tenant.key), "X-Request-ID": "rid-bad"})
            await client.get(URL + "?customer_id=cus_SECRET42", headers={"X-Request-ID": "rid-query"})
    finally:
        server.stop()
    assert ok.status_code == 202 and rejected.status_code == 422
    assert "Zebulon" not in rejected.text
    text = log_path.read_text()
    for needle in ("SECRET42", "Zebulon", "Quixote", "zq@example.org", "5555550199", "1980-01-01", "private"):
        assert needle not in text, f"patient data {needle!r} leaked into the logs"
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    requests = {line["request_id"]: line for line in lines if line.get("event") == "http.request"}
    assert requests["rid-ok"]["status"] == 202 and requests["rid-ok"]["duration_ms"] >= 0
    assert requests["rid-ok"]["route"] == "/v1/businesses/{slug}/consult-submissions"
    assert requests["rid-bad"]["status"] == 422


def test_serve_refuses_fault_injection_in_production():
    result = subprocess.run([sys.executable, "-m", "service.cli", "serve"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60, env={**os.environ, "INTAKE_ENV": "production",
                                                       "INTAKE_FAULTS": "append.after_commit=crash",
                                                       "DATABASE_URL": "postgresql://x@127.0.0.1:1/x"})
    assert result.returncode == 1 and "production" in result.stderr


async def test_events_api_rejects_positions_beyond_bigint_as_400(settings, db):
    from service import admin
    key = (await admin.create_key(db, business=None, scopes=[], admin=True)).key
    async with running_api(settings) as base, httpx.AsyncClient(base_url=base) as client:
        huge = await client.get("/v1/events", params={"after": "99999999999999999999"},
                                headers={"Authorization": f"Bearer {key}"})
        empty = await client.get("/v1/events", headers={"Authorization": f"Bearer {key}"})
    assert huge.status_code == 400 and huge.json()["type"] == "https://intake.dev/problems/invalid-parameter"
    assert empty.status_code == 200 and empty.json() == {"events": [], "next_after": 0}


async def test_metrics_count_every_worker_process_whichever_one_answers_the_scrape(settings, tenant, tmp_path):
    server = ApiProcess({"DATABASE_URL": settings.database_url}, tmp_path / "api.log", workers=2)
    server.start()
    submissions = 24
    try:
        for n in range(submissions):  # a new connection each: the kernel spreads them over both workers
            async with httpx.AsyncClient(base_url=server.base_url) as client:
                created = await client.post(URL, json=submission(customer_id=f"cus_{n}"), headers=headers(tenant.key))
                assert created.status_code == 202, created.text
        scrapes = []
        for _ in range(8):
            async with httpx.AsyncClient(base_url=server.base_url) as client:
                scrapes.append((await client.get("/metrics")).text)
    finally:
        server.stop()
    assert '"workers":2,"workers_from":"--workers"' in server.log_tail(100_000), "serve did not say how many workers"
    counted = f'intake_events_appended_total{{event_type="consult.submitted"}} {float(submissions)}'
    for text in scrapes:
        assert counted in text, "a scrape counted only the submissions its own process handled"
        assert "intake_outbox_backlog " in text
