"""The read side under chaos: two `intake worker`s are SIGKILLed in turn about every second and Redis is
killed midway and restarted empty, while 16 clients send 2,000 submissions and 500 decisions (some racing
on one consultation) to a real `intake serve`. Afterwards the read tables equal a fresh fold of the log,
nothing is duplicated, every acknowledged submission has its consultation, and the API never answered
5xx: ingestion does not depend on Redis or on the workers."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import time
from typing import Any

import asyncpg
import httpx
import pytest
import redis.asyncio

from projections.floors import survey
from projections.projector import PROJECTIONS
from service.devstack import EmbeddedRedis, free_port
from tests.support.fold import actual_tables, expected_tables
from tests.support.payloads import VALID_SUBMISSION, headers, submission
from tests.support.servers import ApiProcess
from tests.support.workers import WorkerProcess

SUBMIT = "/v1/businesses/acme/consult-submissions"
DECIDE = "/v1/businesses/acme/consultations/{}/decision"
SEED = 7
SUBMISSIONS = 2_000
DECISIONS = 500
CLIENTS = 16
# 2,000 draws over 800 × 4 slots: about a quarter hit a slot already used, which is deduplicated
# while its consultation is pending and opens a new one once it is decided.
CUSTOMERS, PRODUCTS = 800, 4
RACE_SIZE = 3  # decisions sent at once on one consultation, with different keys: one 200, the rest 409
RACES = 60  # so 180 of the 500 decisions race
STALE_SHARE = 0.1  # single decisions aimed at a consultation this run already decided: 409
WARM_UP = 200  # the first tickets are submissions, so that decisions find consultations to decide
LOAD_BUDGET_S = 75.0  # the clients stop here even if unfinished (and the test then fails)
KILL_EVERY_S = 1.0
REDIS_OUTAGE_S = 2.0
# No sweep is run by hand: after the load the workers run undisturbed, and their cron sweep (every
# 15 s) repairs the jobs the Redis wipe lost and those abandoned by SIGKILLed workers, whose arq
# in-progress marks would otherwise hold them back for job_timeout + 10 s.
CONVERGE_DEADLINE_S = 90.0
POLL_S = 0.5
SAMPLE = 3  # differing keys shown per table in a failure message


class Load:
    """The clients' shared plan of tickets, and everything the API answered."""

    def __init__(self, key: str) -> None:
        self._key = key
        self._rng = random.Random(SEED)
        self._tickets = self._plan()
        self._deadline = 0.0
        self.statuses: collections.Counter[tuple[str, int]] = collections.Counter()
        self.server_errors: collections.Counter[tuple[str, int, str]] = collections.Counter()
        self.transport_errors: collections.Counter[str] = collections.Counter()
        self.acknowledged: list[tuple[str, str]] = []  # (submission_id, consultation_id) of every 2xx submission
        self.pending: list[str] = []  # consultations this run opened and has not decided yet
        self.decided: dict[str, str] = {}  # consultation → the verdict of its 200
        self.wins: collections.Counter[str] = collections.Counter()  # consultation → 200s to a decision
        self.submitted = 0
        self.halfway = asyncio.Event()

    def _plan(self) -> collections.deque[str]:
        rest = ["submit"] * (SUBMISSIONS - WARM_UP) + ["race"] * RACES + ["decide"] * (DECISIONS - RACES * RACE_SIZE)
        self._rng.shuffle(rest)
        return collections.deque(["submit"] * WARM_UP + rest)

    @property
    def unsent(self) -> int:
        """Tickets left when the budget ran out."""
        return len(self._tickets)

    async def run(self, base_url: str) -> None:
        """Send every ticket from CLIENTS concurrent clients, within LOAD_BUDGET_S."""
        self._deadline = time.monotonic() + LOAD_BUDGET_S
        try:
            async with httpx.AsyncClient(base_url=base_url, timeout=10) as http, asyncio.TaskGroup() as clients:
                for _ in range(CLIENTS):
                    clients.create_task(self._client(http))
        finally:
            self.halfway.set()  # a load that ends early must not leave the Redis wipe waiting

    async def _client(self, http: httpx.AsyncClient) -> None:
        while self._tickets and time.monotonic() < self._deadline:
            ticket = self._tickets.popleft()
            if ticket == "submit":
                await self._submit(http)
            else:
                await self._decide(http, RACE_SIZE if ticket == "race" else 1)

    async def _submit(self, http: httpx.AsyncClient) -> None:
        self.submitted += 1
        if self.submitted == SUBMISSIONS // 2:
            self.halfway.set()
        patient = {**VALID_SUBMISSION["patient"], "email": f"p{self.submitted}@example.com"}
        body = submission(customer_id=f"cus_{self._rng.randrange(CUSTOMERS)}",
                          product_id=f"prod_{self._rng.randrange(PRODUCTS)}", patient=patient)
        response = await self._send(http, "submit", SUBMIT, body)
        if response is not None and response.status_code in (200, 202):
            answer = response.json()
            self.acknowledged.append((answer["submission_id"], answer["consultation_id"]))
            if response.status_code == 202:
                self.pending.append(answer["consultation_id"])

    async def _decide(self, http: httpx.AsyncClient, size: int) -> None:
        if size == 1 and self.decided and self._rng.random() < STALE_SHARE:
            target = self._rng.choice(list(self.decided))
        else:
            assert self.pending, "no pending consultation left to decide: the plan is off"
            target = self.pending.pop(self._rng.randrange(len(self.pending)))
        bodies = [{"decision": self._rng.choice(("approved", "rejected")), "reason": "chaos",
                   "clinician_id": f"clin_{n}"} for n in range(size)]
        responses = await asyncio.gather(*(self._send(http, "decide", DECIDE.format(target), body)
                                           for body in bodies))
        for response in responses:
            if response is not None and response.status_code == 200:
                self.wins[target] += 1
                self.decided[target] = response.json()["status"]

    async def _send(self, http: httpx.AsyncClient, operation: str, url: str,
                    body: dict[str, Any]) -> httpx.Response | None:
        try:
            response = await http.post(url, json=body, headers=headers(self._key))
        except httpx.HTTPError as error:
            self.transport_errors[type(error).__name__] += 1
            return None
        self.statuses[operation, response.status_code] += 1
        if response.status_code >= 500:
            problem = response.json().get("type", "?") if "json" in response.headers.get("content-type", "") else "?"
            self.server_errors[operation, response.status_code, problem] += 1
        return response


async def _set_within(event: asyncio.Event, timeout: float) -> bool:
    """Whether `event` is set within `timeout` seconds: the pacing of the faults, cut short by the end of the load."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)
    return event.is_set()


async def kill_workers_in_turn(workers: list[WorkerProcess], done: asyncio.Event) -> int:
    """SIGKILL one worker about every KILL_EVERY_S, alternating, and start it again at once; returns the kills."""
    kills = 0
    while not await _set_within(done, KILL_EVERY_S):
        worker = workers[kills % len(workers)]
        await asyncio.to_thread(worker.kill)
        await asyncio.to_thread(worker.start)
        kills += 1
    return kills


async def wipe_redis_midway(server: EmbeddedRedis, halfway: asyncio.Event, done: asyncio.Event) -> int | None:
    """Once half the submissions are out, SIGKILL Redis, leave it down a moment, start it again empty.

    Returns how many jobs were queued when it died (all lost: Redis persists nothing), None if the load ended first.
    """
    await halfway.wait()
    if done.is_set():
        return None
    client = redis.asyncio.Redis.from_url(server.url())
    try:
        queued = await client.zcard("arq:queue")
    finally:
        await client.aclose()
    await asyncio.to_thread(server.kill)
    await _set_within(done, REDIS_OUTAGE_S)
    await asyncio.to_thread(server.start)
    return queued


async def wait_until_converged(db: asyncpg.Connection, workers: list[WorkerProcess]) -> tuple[float, float]:
    """Poll until the outbox is empty and the read tables equal a fresh fold of the log.

    Returns the seconds until the outbox was empty and until the tables matched.
    """
    started = time.monotonic()
    relayed_s = None
    while True:
        if await db.fetchval("SELECT count(*) FROM outbox") == 0:
            relayed_s = time.monotonic() - started if relayed_s is None else relayed_s
            async with db.transaction(isolation="repeatable_read"):  # both sides from one snapshot
                expected, actual = await expected_tables(db), await actual_tables(db)
            if expected == actual:
                return relayed_s, time.monotonic() - started
        if time.monotonic() - started > CONVERGE_DEADLINE_S:
            diff = divergence(await expected_tables(db), await actual_tables(db))
            logs = "\n".join(f"--- worker {n} log ends:\n{w.log_tail(1500)}" for n, w in enumerate(workers))
            pytest.fail(f"no convergence within {CONVERGE_DEADLINE_S:g}s\n{await projection_state(db)}\n{diff}\n{logs}")
        await asyncio.sleep(POLL_S)


async def projection_state(db: asyncpg.Connection) -> str:
    """Outbox, failures and lag: what to look at first when the read side is stuck."""
    outbox = await db.fetchrow("SELECT count(*) AS n, max(attempts) AS attempts, "
                               "extract(epoch FROM max(available_at) - now())::float8 AS due_s FROM outbox")
    failures = await db.fetch("SELECT projection, stream_id, error, attempts, parked FROM projection_failures "
                              "ORDER BY failed_at DESC LIMIT 5")
    lagging, _ = await survey(db, list(PROJECTIONS))
    return (f"outbox: {outbox['n']} rows (max attempts {outbox['attempts']}, last one due in {outbox['due_s']}s); "
            f"streams some projection lags on: {len(lagging)}; failures: {[dict(f) for f in failures]}")


def divergence(expected: dict[str, dict[Any, Any]], actual: dict[str, dict[Any, Any]]) -> str:
    """Counts and a few keys per table; keys and column names only, never row values (patient data)."""
    lines = []
    for table, want in expected.items():
        have = actual[table]
        missing = [k for k in want if k not in have]
        extra = [k for k in have if k not in want]
        differing = [k for k in want.keys() & have.keys() if want[k] != have[k]]
        columns = sorted({c for k in differing for c in want[k] if want[k][c] != have[k].get(c)})
        lines.append(f"{table}: expected {len(want)} rows, found {len(have)}; missing {len(missing)} "
                     f"{missing[:SAMPLE]}; extra {len(extra)} {extra[:SAMPLE]}; differing {len(differing)} "
                     f"{differing[:SAMPLE]} in columns {columns}")
    return "\n".join(lines)


@pytest.fixture
def own_redis(tmp_path):
    """A Redis this test may kill and restart empty on the same port (the session's is shared)."""
    server = EmbeddedRedis(tmp_path / "redis", port=free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(240)
async def test_read_models_converge_on_the_log_through_worker_kills_and_a_redis_wipe(
        database_url, tenant, db, tmp_path, own_redis):
    env = {"DATABASE_URL": database_url, "REDIS_URL": own_redis.url()}
    api = ApiProcess(env, tmp_path / "api.log")
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log") for n in range(2)]
    load = Load(tenant.key)
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(api.stop)
        for worker in workers:
            cleanup.callback(worker.stop)
        api.start()
        for worker in workers:
            worker.start()
        started = time.monotonic()
        done = asyncio.Event()
        async with asyncio.TaskGroup() as chaos:
            killing = chaos.create_task(kill_workers_in_turn(workers, done))
            wiping = chaos.create_task(wipe_redis_midway(own_redis, load.halfway, done))
            try:
                await load.run(api.base_url)
            finally:
                done.set()
        kills, lost_jobs = killing.result(), wiping.result()
        load_s = time.monotonic() - started
        backlog = await db.fetchrow("SELECT (SELECT count(*) FROM outbox) AS outbox, (SELECT count(*) FROM events) "
                                    "AS events, (SELECT count(*) FROM consultations) AS consultations")

        for worker in workers:  # quiesce: both workers up (a no-op for a running one), Redis up
            worker.start()
        assert own_redis.running
        relayed_s, converged_s = await wait_until_converged(db, workers)
        failures = await db.fetchval("SELECT count(*) FROM projection_failures")
        print(f"\nload {load_s:.1f}s, answers {dict(load.statuses)}; {kills} worker kills; Redis wiped with "
              f"{lost_jobs} jobs queued; at the end of the load {dict(backlog)}; outbox empty after "
              f"{relayed_s:.1f}s, converged after {converged_s:.1f}s; projection failures recorded {failures}; "
              f"5xx {dict(load.server_errors)}; transport errors {dict(load.transport_errors)}")

        assert load.unsent == 0, f"{load.unsent} tickets unsent after {LOAD_BUDGET_S:g}s"
        assert kills >= 5 and lost_jobs is not None, "the chaos did not happen"
        await assert_nothing_duplicated(db)
        await assert_every_acknowledged_submission_has_its_consultation(db, load)
        await assert_each_consultation_decided_once(db, load)
        assert_api_unaffected(load)


async def assert_nothing_duplicated(db: asyncpg.Connection) -> None:
    """One consultation per submission; at most one pending approval per slot."""
    assert await db.fetch("SELECT submission_id FROM consultations GROUP BY 1 HAVING count(*) > 1") == []
    assert await db.fetch("SELECT business_id, customer_id, product_id FROM approvals WHERE status = 'pending' "
                          "GROUP BY 1, 2, 3 HAVING count(*) > 1") == []


async def assert_every_acknowledged_submission_has_its_consultation(db: asyncpg.Connection, load: Load) -> None:
    """Each 2xx named a consultation that exists, opened by the submission it named."""
    rows = {str(r["consultation_id"]): str(r["submission_id"])
            for r in await db.fetch("SELECT consultation_id, submission_id FROM consultations")}
    wrong = [consultation for submission_id, consultation in load.acknowledged
             if rows.get(consultation) != submission_id]
    assert wrong == [], f"{len(wrong)} acknowledged submissions lack their consultation, e.g. {wrong[:SAMPLE]}"


async def assert_each_consultation_decided_once(db: asyncpg.Connection, load: Load) -> None:
    """Racing decisions: one 200 and one decided event per consultation, its verdict recorded; the rest were 409."""
    assert [c for c, n in load.wins.items() if n > 1] == []
    assert await db.fetch("SELECT payload ->> 'consultation_id' FROM events WHERE event_type = 'consult.decided' "
                          "GROUP BY 1 HAVING count(*) > 1") == []
    assert load.statuses["decide", 409] >= RACES * (RACE_SIZE - 1), "the races did not race"
    statuses = {str(r["consultation_id"]): r["status"]
                for r in await db.fetch("SELECT consultation_id, status FROM consultations WHERE decision IS NOT NULL")}
    assert {c: statuses.get(c) for c in load.decided} == load.decided


def assert_api_unaffected(load: Load) -> None:
    """Only the expected answers, and no 5xx — not even 503 while Redis was down: ingestion never touches Redis."""
    unavailable = sum(n for (_, status, _), n in load.server_errors.items() if status == 503)
    other_5xx = sum(n for (_, status, _), n in load.server_errors.items() if status != 503)
    assert unavailable == 0, f"503s during the run: {dict(load.server_errors)}"
    assert other_5xx == 0, f"5xx during the run: {dict(load.server_errors)}"
    assert not load.transport_errors, f"requests that got no answer: {dict(load.transport_errors)}"
    unexpected = {k: n for k, n in load.statuses.items() if k not in {("submit", 200), ("submit", 202),
                                                                       ("decide", 200), ("decide", 409)}}
    assert unexpected == {}, f"unexpected answers: {unexpected}"
