"""`intake worker` seals by itself, every INTAKE_SEAL_INTERVAL_S, only when the log grew, and each
of its seals extends the previous one (verify exits 0 over them)."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from events.sealing import seal
from events.seals import new_private_text, private_key
from tests.support.integrity import intake
from tests.support.replay import generate_submissions
from tests.support.supervision import eventually, log_lines
from tests.support.workers import WorkerProcess

DEADLINE_S = 30.0


def sealed_up_to(db: asyncpg.Connection, events: int):
    async def check() -> bool:
        return await db.fetchval("SELECT coalesce(max(tree_size), 0) FROM seals") == events
    return check


async def test_the_worker_seals_what_the_log_gained_and_nothing_when_it_did_not(db, settings, tmp_path):
    key = new_private_text()
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url, "INTAKE_SEAL_KEY": key,
           "INTAKE_SEAL_INTERVAL_S": "1"}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    await generate_submissions(db, 1, 25, prefix="first_")
    worker.start()
    try:
        await eventually(sealed_up_to(db, 25), DEADLINE_S, "a seal over the first 25 events")
        await generate_submissions(db, 1, 5, prefix="second_")
        await eventually(sealed_up_to(db, 30), DEADLINE_S, "a seal over 30 events")
        await generate_submissions(db, 1, 1, prefix="third_")
        await eventually(sealed_up_to(db, 31), DEADLINE_S, "a seal over 31 events")
    finally:
        worker.stop()
    seals = await db.fetch("SELECT seal_no, tree_size FROM seals ORDER BY seal_no")
    # One seal per growth: an idle interval made none (tree sizes are unique, numbers contiguous).
    assert [(s["seal_no"], s["tree_size"]) for s in seals] == [(1, 25), (2, 30), (3, 31)]
    assert not log_lines(tmp_path / "worker.log", "worker.loop_crashed")
    done = await intake({"DATABASE_URL": settings.database_url, "INTAKE_SEAL_KEY": key}, "events", "verify")
    assert done.returncode == 0 and "intact: 31 events" in done.stdout and "3 seals" in done.stdout, done.stdout


async def test_two_sealers_at_once_take_turns_and_make_one_seal(db, database_url):
    await generate_submissions(db, 1, 12)
    key = private_key(new_private_text())
    first, second = await asyncpg.connect(database_url), await asyncpg.connect(database_url)
    try:
        made = await asyncio.gather(seal(first, key), seal(second, key))
    finally:
        await first.close()
        await second.close()
    assert sorted(m is None for m in made) == [False, True]  # the second found nothing new
    assert await db.fetchval("SELECT count(*) FROM seals") == 1


async def test_a_seal_cannot_be_changed_without_switching_the_triggers_off(db):
    await generate_submissions(db, 1, 3)
    await seal(db, private_key(new_private_text()))
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="seals are append-only: UPDATE"):
        await db.execute("UPDATE seals SET tree_size = 1")
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="seals are append-only: DELETE"):
        await db.execute("DELETE FROM seals")
