"""The real `intake worker` delivering webhooks, SIGKILLed mid-run while Redis is wiped: after a
restart every event reaches the receiver, none lost (the follower's cursor lives in PostgreSQL and
Redis plays no part in deliveries)."""

from __future__ import annotations

import json

import redis.asyncio

from service import webhooks
from tests.support.consults import submit
from tests.support.reads import api
from tests.support.receiver import Receiver, receiving
from tests.support.supervision import eventually
from tests.support.webhooks import compressed
from tests.support.workers import WorkerProcess

EVENTS = 60
DELIVERED = f"SELECT count(*) = {EVENTS} FROM webhook_deliveries WHERE state = 'delivered'"


async def test_every_event_is_delivered_after_a_kill_9_of_the_worker_and_a_redis_wipe(
        settings, tenant, db, tmp_path, own_redis):
    receiver = Receiver(delay_s=0.02)
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": own_redis.url(),
           "WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8", "WEBHOOK_RETRY_BASE_MS": "50",
           "WEBHOOK_TIMEOUT_MS": "2000"}  # the killed worker's leases run out after 2 × 2 + 5 s
    worker = WorkerProcess(env, tmp_path / "worker.log")
    async with receiving(receiver), api(settings) as client:
        acme = await db.fetchval("SELECT id FROM businesses WHERE slug = 'acme'")
        await webhooks.add_endpoint(db, compressed(settings), acme, receiver.url + "/hooks", ["consult.submitted"])
        worker.start()
        try:
            sent = [await submit(client, tenant, customer_id=f"cus_{i}") for i in range(EVENTS // 2)]
            await eventually(lambda: len(receiver.received) >= 5, 60, "the first deliveries")
            sender = _webhooks_process(worker)
            worker.kill()
            # Its webhooks' process dies with it (it must not go on sending beside the next one's).
            await eventually(lambda: not _alive(sender), 10, "the webhooks' process gone with its worker")
            wipe = redis.asyncio.Redis.from_url(own_redis.url())
            await wipe.flushall()
            await wipe.aclose()
            sent += [await submit(client, tenant, customer_id=f"cus_{i}") for i in range(EVENTS // 2, EVENTS)]
            assert len({r.webhook_id for r in receiver.received}) < EVENTS  # the kill came mid-run
            worker.start()
            expected = {s["event_id"] for s in sent}
            await eventually(lambda: {r.webhook_id for r in receiver.received} >= expected, 90,
                             f"all {EVENTS} events delivered\n{worker.log_tail()}")
            # What the killed worker was sending is settled once its leases run out (sent again: the
            # receiver sees the same webhook-id twice, which is what its idempotency is for).
            await eventually(lambda: db.fetchval(DELIVERED), 60, "every delivery settled")
        finally:
            worker.stop()
    assert {r.webhook_id for r in receiver.received} == expected  # nothing lost, nothing foreign
    assert worker.kills == 1 and worker.starts == 2
    assert await db.fetchval("SELECT count(*) FROM webhook_deliveries") == EVENTS


def _webhooks_process(worker: WorkerProcess) -> int:
    """The pid of the webhooks' process the running worker started (its log says)."""
    started = [json.loads(line) for line in worker.log_tail(10**6).splitlines()
               if '"webhooks.process_started"' in line]
    assert started, worker.log_tail()
    return int(started[-1]["pid"])


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it has ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
