"""The read side under chaos: two `intake worker`s are SIGKILLed in turn about every second and Redis is
killed midway and restarted empty, while 16 clients send 2,000 submissions and 500 decisions (some racing
on one consultation) to a real `intake serve`. Afterwards the read tables equal a fresh fold of the log,
nothing is duplicated, every acknowledged submission has its consultation, and the API never answered
5xx: ingestion does not depend on Redis or on the workers."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time

import asyncpg
import pytest

from service.devstack import EmbeddedRedis
from tests.support.chaos import kill_workers_in_turn, wipe_redis_midway
from tests.support.convergence import SAMPLE, wait_until_converged
from tests.support.load import Load, LoadPlan
from tests.support.servers import ApiProcess
from tests.support.workers import WorkerProcess

PLAN = LoadPlan(
    submissions=2_000, decisions=500, clients=16, seed=7,
    # 2,000 draws over 800 × 4 slots: about a quarter hit a slot already used, which is deduplicated
    # while its consultation is pending and opens a new one once it is decided.
    customers=800, products=4,
    race_size=3, races=60,  # three decisions at once on one consultation: one 200, two 409; 180 of the 500 race
    stale_share=0.1,  # single decisions aimed at a consultation this run already decided: 409
    warm_up=200,
    budget_s=75.0,  # the clients stop here even if unfinished (and the test then fails)
)
KILL_EVERY_S = 1.0
REDIS_OUTAGE_S = 2.0
# No sweep is run by hand: after the load the workers run undisturbed, and their cron sweep (every
# 15 s) repairs the jobs the Redis wipe lost and those abandoned by SIGKILLed workers, whose arq
# in-progress marks would otherwise hold them back for job_timeout + 10 s.
CONVERGE_DEADLINE_S = 90.0
POLL_S = 0.5


@dataclasses.dataclass(frozen=True)
class Chaos:
    """What the faults did while the load ran."""

    kills: int
    lost_jobs: int | None  # queued when Redis was wiped; None if the load ended before halfway
    load_s: float




@pytest.mark.timeout(240)
async def test_read_models_converge_on_the_log_through_worker_kills_and_a_redis_wipe(
        settings, tenant, db, tmp_path, own_redis, keyring):
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": own_redis.url()}
    api = ApiProcess(env, tmp_path / "api.log")
    workers = [WorkerProcess(env, tmp_path / f"worker-{n}.log") for n in range(2)]
    load = Load(PLAN, tenant.key)
    with contextlib.ExitStack() as cleanup:
        for process in (api, *workers):
            cleanup.callback(process.stop)
            process.start()
        chaos = await run_load_under_chaos(load, api, workers, own_redis)
        backlog = await backlog_of(db)
        for worker in workers:  # quiesce: both workers up (a no-op for a running one), Redis up
            worker.start()
        assert own_redis.running
        relayed_s, converged_s = await wait_until_converged(db, keyring, workers, deadline_s=CONVERGE_DEADLINE_S,
                                                            poll_s=POLL_S)
        failures = await db.fetchval("SELECT count(*) FROM projection_failures")
        print(f"\nload {chaos.load_s:.1f}s, answers {dict(load.statuses)}; {chaos.kills} worker kills; Redis wiped "
              f"with {chaos.lost_jobs} jobs queued; at the end of the load {backlog}; outbox empty after "
              f"{relayed_s:.1f}s, converged after {converged_s:.1f}s; projection failures recorded {failures}; "
              f"5xx {dict(load.server_errors)}; transport errors {dict(load.transport_errors)}")

        assert load.unsent == 0, f"{load.unsent} tickets unsent after {PLAN.budget_s:g}s"
        assert chaos.kills >= 5 and chaos.lost_jobs is not None, "the chaos did not happen"
        await assert_nothing_duplicated(db)
        await assert_every_acknowledged_submission_has_its_consultation(db, load)
        await assert_each_consultation_decided_once(db, load)
        assert_api_unaffected(load)


async def run_load_under_chaos(load: Load, api: ApiProcess, workers: list[WorkerProcess],
                               redis_server: EmbeddedRedis) -> Chaos:
    """Send the whole load while workers are killed in turn and Redis is wiped halfway; stop the faults with it."""
    started = time.monotonic()
    done = asyncio.Event()
    async with asyncio.TaskGroup() as faults:
        killing = faults.create_task(kill_workers_in_turn(workers, done, KILL_EVERY_S))
        wiping = faults.create_task(wipe_redis_midway(redis_server, load.halfway, done, REDIS_OUTAGE_S))
        try:
            await load.run(api.base_url)
        finally:
            done.set()
    return Chaos(kills=killing.result(), lost_jobs=wiping.result(), load_s=time.monotonic() - started)


async def backlog_of(db: asyncpg.Connection) -> dict[str, int]:
    """Outbox rows, events and consultations at one moment: how far the read side trails the log."""
    return dict(await db.fetchrow("SELECT (SELECT count(*) FROM outbox) AS outbox, (SELECT count(*) FROM events) "
                                  "AS events, (SELECT count(*) FROM consultations) AS consultations"))


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
    assert load.statuses["decide", 409] >= PLAN.races * (PLAN.race_size - 1), "the races did not race"
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
