"""Running the tamper-evidence commands as real processes, and editing the log the way an attacker
with superuser rights would: switch the append-only triggers off, change rows, switch them back on."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator

import asyncpg

from tests.support.replay import ROOT

# Every trigger an attacker must get past, and how each was enabled (ALWAYS: even for replica sessions).
PROTECTED = {"events": ("events_no_update_delete", "events_no_truncate"),
             "seals": ("seals_no_update_delete", "seals_no_truncate")}


async def intake(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`intake ARGS` as a process of its own, to completion."""
    return await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "service.cli", *args], capture_output=True,
                                   text=True, cwd=ROOT, timeout=timeout, env=env)


@contextlib.asynccontextmanager
async def as_attacker(superuser: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """A transaction with the log's protections off; they are on again when it commits."""
    async with superuser.transaction():
        for table, triggers in PROTECTED.items():
            for trigger in triggers:
                await superuser.execute(f"ALTER TABLE {table} DISABLE TRIGGER {trigger}")
        yield superuser
        for table, triggers in PROTECTED.items():
            for trigger in triggers:
                await superuser.execute(f"ALTER TABLE {table} ENABLE ALWAYS TRIGGER {trigger}")
