"""`intake projections rebuild` as a real child process: while a real `intake serve` and `intake worker`
take a load of submissions and decisions and answer reads (on pooled connections with prepared
statements on the old tables), no request fails and afterwards `verify` exits 0; a rebuild
SIGKILLed midway leaves the live tables as they were, and a rerun completes. `verify`, run while the
load goes on, agrees too: it compares at one log position."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time

import asyncpg
import httpx
import pytest

from projections.projector import PROJECTIONS
from projections.rebuild import RebuildBusy, rebuild
from tests.support.convergence import wait_until_converged
from tests.support.generated_log import write_log
from tests.support.load import Load, LoadPlan
from tests.support.reads import BASE, LISTS
from tests.support.servers import ROOT, ApiProcess
from tests.support.workers import WorkerProcess

# Long enough to outlast a rebuild's whole process, which yields the CPU to the API (nice 10, its
# backends too) and so takes longer the busier the API is.
PLAN = LoadPlan(submissions=1500, decisions=300, clients=8, customers=400, products=3, race_size=2, races=10,
                stale_share=0.1, warm_up=80, budget_s=40.0, seed=11)
REBUILDS_DURING_LOAD = 3  # at most; each is a whole process (start-up included)
CONVERGE_DEADLINE_S = 12.0  # below the 15 s cron sweep: the swap itself must leave nothing for it to repair
KILL_LOG_EVENTS = 30_000
POLL_S = 0.02


def cli(settings, *args: str) -> list[str]:
    return [sys.executable, "-m", "service.cli", "projections", *args]


def cli_env(settings) -> dict[str, str]:
    return {**os.environ, "DATABASE_URL": settings.database_url, "OWNER_DATABASE_URL": settings.owner_database_url}


async def run_cli(settings, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(*cli(settings, *args), env=cli_env(settings), cwd=ROOT,
                                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, output.decode()


async def keep_reading(base_url: str, key: str, load_task: asyncio.Task[None]) -> dict[int, int]:
    """GET every list, over and over, until the load ends; counts of each status."""
    statuses: dict[int, int] = {}
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        while not load_task.done():
            for path in LISTS:
                response = await http.get(BASE.format(slug="acme") + path, headers={"Authorization": f"Bearer {key}"})
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
    return statuses


async def rebuild_while(settings, load_task: asyncio.Task[None]) -> tuple[list[tuple[int, str, bool]],
                                                                         list[tuple[int, str]]]:
    """Rebuild all three projections, and verify them, again and again while the load runs (bounded);
    each rebuild with whether the load was still running when it had swapped."""
    rebuilds, verifies = [], []
    while not load_task.done() and len(rebuilds) < REBUILDS_DURING_LOAD:
        rebuilds.append((*await run_cli(settings, "rebuild"), not load_task.done()))
        verifies.append(await run_cli(settings, "verify"))  # at one log position: no flapping under load
    return rebuilds, verifies


@pytest.mark.timeout(120)
async def test_a_rebuild_under_load_fails_no_request_and_verify_then_passes(settings, tenant, db, tmp_path, keyring):
    env = {"DATABASE_URL": settings.database_url, "REDIS_URL": settings.redis_url}
    api, worker = ApiProcess(env, tmp_path / "api.log"), WorkerProcess(env, tmp_path / "worker.log")
    load = Load(PLAN, tenant.key)
    with contextlib.ExitStack() as cleanup:
        for process in (api, worker):
            cleanup.callback(process.stop)
            process.start()
        load_task = asyncio.create_task(load.run(api.base_url))
        reads = asyncio.create_task(keep_reading(api.base_url, tenant.read_only_key, load_task))
        rebuilds, verifies_during_load = await rebuild_while(settings, load_task)
        await load_task
        read_statuses = await reads
        await wait_until_converged(db, keyring, [worker], deadline_s=CONVERGE_DEADLINE_S, poll_s=0.2)
        verified = await run_cli(settings, "verify")

    assert all(code == 0 and "rebuilt patients, consultations, approvals" in out
               for code, out, _ in rebuilds), rebuilds
    assert any(during_load for _, _, during_load in rebuilds), "no rebuild swapped while the load ran"
    assert load.unsent == 0 and not load.server_errors and not load.transport_errors, (
        load.server_errors, load.transport_errors, api.log_tail())
    assert set(read_statuses) == {200} and sum(read_statuses.values()) > len(LISTS), read_statuses
    assert verified[0] == 0, verified[1]
    assert all(code == 0 for code, _ in verifies_during_load), verifies_during_load
    assert "cached plan" not in api.log_tail(200_000) and "does not exist" not in api.log_tail(200_000)


async def shadow_rows(db: asyncpg.Connection) -> int:
    with contextlib.suppress(asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return await db.fetchval("SELECT count(*) FROM intake_rebuild.consultations")
    return 0


async def digest(db: asyncpg.Connection) -> list[object]:
    """The live tables' identity and content, and the checkpoints'."""
    return [await db.fetchval(f"SELECT ('{table}'::regclass::oid, md5(string_agg(t::text, ',' ORDER BY t::text))) "
                              f"FROM {table} t") for table in (*PROJECTIONS, "projection_checkpoints")]


@pytest.mark.timeout(120)
async def test_a_rebuild_killed_midway_leaves_live_tables_untouched_and_a_rerun_completes(settings, tenant, db, keyring):
    business_id = await db.fetchval("SELECT id FROM businesses WHERE slug = $1", tenant.slug)
    await write_log(db, business_id=business_id, events=KILL_LOG_EVENTS)
    assert (await run_cli(settings, "rebuild"))[0] == 0  # the live tables, made by a first rebuild
    before = await digest(db)

    child = subprocess.Popen(cli(settings, "rebuild"), env=cli_env(settings), cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while await shadow_rows(db) == 0:
            assert child.poll() is None and time.monotonic() < deadline, "the rebuild wrote no shadow rows"
            await asyncio.sleep(POLL_S)
        with pytest.raises(RebuildBusy):  # two at once: the second is refused
            await rebuild(settings.owner_database_url, list(PROJECTIONS), keyring)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    assert child.returncode == -signal.SIGKILL  # killed midway, not finished

    assert await digest(db) == before
    assert await shadow_rows(db) > 0  # the leftover, which the rerun must clear
    assert (await run_cli(settings, "verify"))[0] == 0
    deadline = time.monotonic() + 10  # the server ends the killed session (and its lock) on its own
    while (code_and_output := await run_cli(settings, "rebuild"))[0] != 0:
        assert "another rebuild is running" in code_and_output[1] and time.monotonic() < deadline, code_and_output
    assert await db.fetchval("SELECT count(*) FROM pg_namespace WHERE nspname = 'intake_rebuild'") == 0
    assert (await run_cli(settings, "verify"))[0] == 0
