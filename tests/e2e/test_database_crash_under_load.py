"""PostgreSQL crashes (`pg_ctl restart -m immediate`) again and again under concurrent submissions,
decisions and reads against the real `intake serve`: no request ever gets a 500; every 5xx is a 503
problem+json with Retry-After; a client that retries a 503 with the same key gets its request
applied exactly once; every acknowledged key replays; the service recovers without a restart."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from service.devstack import EmbeddedPostgres, pg_bin
from service.devstack import postgres as devstack_pg
from tests.support.payloads import headers, submission
from tests.support.servers import ApiProcess

SUBMIT = "/v1/businesses/acme/consult-submissions"
DECIDE = "/v1/businesses/acme/consultations/{}/decision"
READ = "/v1/businesses/acme/consultations"
# Measured before the fix: 4 crashes got a 500 in 3 runs of 6 (plain); 6 crashes in 5 runs of 5
# for each variant. A crash run costs about a second.
CRASHES = 6
SUBMITTERS, DECIDERS, READERS = 6, 2, 1
PROGRESS = 20  # acknowledged requests between crashes: each crash lands on a steady stream
PROGRESS_TIMEOUT_S = 15.0
RETRY_DEADLINE_S = 20.0  # a 503 must clear within this long once the database is back
RETRY_PACE_S = 0.05  # a client's pause between retries of one key (the header says 1 s; we are impatient)
REPLAYERS = 8


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """One request that finally got its 2xx, and whether any attempt at it got a 503 first."""

    url: str
    key: str
    body: dict[str, Any]
    status: int
    answer: dict[str, Any]
    after_503: bool


class Traffic:
    """Clients that retry a 503 with the same key, as the API asks, and note anything else amiss."""

    def __init__(self, client: httpx.AsyncClient, api_key: str) -> None:
        self.client, self.api_key = client, api_key
        self.acknowledged: list[Acknowledged] = []
        self.wrong: list[str] = []  # what the clients saw that the contract does not allow
        self.undecided: asyncio.Queue[str] = asyncio.Queue()
        self.stop = asyncio.Event()

    async def send(self, url: str, body: dict[str, Any], ok: int) -> Acknowledged | None:
        """POST under one key until it is not a 503; the acknowledgement, or None (noted in `wrong`)."""
        key, after_503, deadline = uuid.uuid4().hex, False, time.monotonic() + RETRY_DEADLINE_S
        while True:
            response = await self._post(url, body, key)
            if response is None or response.status_code != 503:
                break
            self._check_unavailable(response)
            after_503 = True
            if time.monotonic() > deadline:
                self.wrong.append(f"{url}: still 503 after {RETRY_DEADLINE_S:g}s")
                return None
            await asyncio.sleep(RETRY_PACE_S)
        if response is None:
            return None
        if response.status_code != ok:
            self.wrong.append(f"POST {url} -> {response.status_code} {response.text[:200]}")
            return None
        done = Acknowledged(url, key, body, response.status_code, response.json(), after_503)
        self.acknowledged.append(done)
        return done

    async def _post(self, url: str, body: dict[str, Any], key: str) -> httpx.Response | None:
        try:
            return await self.client.post(url, json=body, headers=headers(self.api_key, key))
        except httpx.HTTPError as error:  # the API process stays up: it must always answer
            self.wrong.append(f"POST {url} -> {type(error).__name__}")
            return None

    def _check_unavailable(self, response: httpx.Response) -> None:
        if (response.headers.get("retry-after") != "1"
                or response.headers.get("content-type") != "application/problem+json"
                or response.json().get("status") != 503):
            self.wrong.append(f"a 503 without Retry-After or problem+json: {response.headers} {response.text}")

    async def submitter(self) -> None:
        while not self.stop.is_set():
            idem = uuid.uuid4().hex
            done = await self.send(SUBMIT, submission(customer_id=f"cus_{idem}"), 202)
            if done is not None:
                self.undecided.put_nowait(done.answer["consultation_id"])

    async def decider(self) -> None:
        while not self.stop.is_set():
            try:
                consultation_id = await asyncio.wait_for(self.undecided.get(), 0.2)
            except TimeoutError:
                continue
            await self.send(DECIDE.format(consultation_id), decision(), 200)

    async def reader(self) -> None:
        while not self.stop.is_set():
            try:
                response = await self.client.get(READ, headers=headers(self.api_key))
            except httpx.HTTPError as error:
                self.wrong.append(f"GET {READ} -> {type(error).__name__}")
                continue
            if response.status_code == 503:
                self._check_unavailable(response)
                await asyncio.sleep(RETRY_PACE_S)
            elif response.status_code != 200:
                self.wrong.append(f"GET {READ} -> {response.status_code} {response.text[:200]}")

    async def wait_for_progress(self, count: int) -> None:
        """Poll until `count` more requests are acknowledged: the stream flows (again)."""
        target, deadline = len(self.acknowledged) + count, time.monotonic() + PROGRESS_TIMEOUT_S
        while len(self.acknowledged) < target:
            assert time.monotonic() < deadline, f"no progress; clients saw: {self.wrong[:5]}"
            await asyncio.sleep(0.02)


def decision() -> dict[str, Any]:
    return {"decision": "approved", "reason": "Meets the criteria", "clinician_id": "clin_7"}


def crash_and_restart(server: EmbeddedPostgres, log: Path) -> None:
    """`pg_ctl restart -m immediate`: every backend is killed mid-whatever (no checkpoint, crash
    recovery at start), as the postgres account when we are root, like the server itself."""
    argv = [str(pg_bin("pg_ctl")), "-D", str(server.data_dir), "-m", "immediate", "-w", "-t", "30", "restart"]
    with log.open("ab") as out:  # not a pipe: the new postmaster inherits it and would hold run() open
        subprocess.run(argv, cwd=server.data_dir, env=devstack_pg.clean_env(), stdout=out, stderr=out,
                       check=True, timeout=60, **devstack_pg.run_as(devstack_pg.server_user()))


async def replays(client: httpx.AsyncClient, api_key: str, done: Acknowledged) -> str | None:
    """Send the same key and body again: the same answer, marked as a replay; else what differs."""
    response = await client.post(done.url, json=done.body, headers=headers(api_key, done.key))
    if (response.status_code, response.headers.get("idempotent-replayed")) != (done.status, "true"):
        return f"{done.url} {done.key}: replay got {response.status_code} {response.headers}"
    return None if response.json() == done.answer else f"{done.url} {done.key}: replay answered differently"


async def replay_all(client: httpx.AsyncClient, api_key: str, acknowledged: list[Acknowledged]) -> list[str]:
    """Replay every acknowledged request, REPLAYERS at a time; what did not replay faithfully."""
    gate = asyncio.Semaphore(REPLAYERS)

    async def replay(done: Acknowledged) -> str | None:
        async with gate:
            return await replays(client, api_key, done)

    return [mismatch for mismatch in await asyncio.gather(*map(replay, acknowledged)) if mismatch]


async def events_per_key(server: EmbeddedPostgres, keys: list[str]) -> dict[str, int]:
    """How many events in the log carry each of these idempotency keys."""
    conn = await asyncpg.connect(server.url())
    try:
        return dict(await conn.fetch("SELECT idempotency_key, count(*) FROM events "
                                     "WHERE idempotency_key = ANY($1) GROUP BY 1", keys))
    finally:
        await conn.close()


# Slow commits hold transactions open, so more crashes land between a transaction's statements.
@pytest.mark.parametrize("faults", ["", "append.before_commit=delay:10"], ids=["plain", "slow-commits"])
async def test_database_crashes_under_load_answer_503_never_500(own_postgres, tmp_path, faults):
    server, tenant = own_postgres
    api = ApiProcess({"DATABASE_URL": server.url(), "DB_CONNECT_TIMEOUT_MS": "500",
                      "DB_ACQUIRE_TIMEOUT_MS": "1000", "INTAKE_FAULTS": faults}, tmp_path / "api.log")
    api.start()
    try:
        async with httpx.AsyncClient(base_url=api.base_url, timeout=10) as client:
            traffic = Traffic(client, tenant.key)
            clients = [traffic.submitter() for _ in range(SUBMITTERS)] + [traffic.decider() for _ in range(DECIDERS)]
            tasks = [asyncio.create_task(c) for c in clients + [traffic.reader() for _ in range(READERS)]]
            try:
                for _ in range(CRASHES):
                    await traffic.wait_for_progress(PROGRESS)
                    await asyncio.to_thread(crash_and_restart, server, tmp_path / "pg_ctl.log")
                await traffic.wait_for_progress(PROGRESS)  # recovered by itself, same process
            finally:
                traffic.stop.set()
                await asyncio.gather(*tasks)
            assert api.process is not None and api.process.poll() is None, api.log_tail()
            assert traffic.wrong == [], traffic.wrong[:10]
            after_503 = [done for done in traffic.acknowledged if done.after_503]
            assert len(after_503) >= CRASHES, "the crashes did not land under load"
            mismatches = await replay_all(client, tenant.key, traffic.acknowledged)
            assert mismatches == [], mismatches[:10]
    finally:
        api.stop()
    # Each acknowledged key, 503s and retries included, was applied exactly once.
    keys = [done.key for done in traffic.acknowledged]
    assert await events_per_key(server, keys) == {key: 1 for key in keys}

