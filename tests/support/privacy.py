"""Looking for patient data anywhere in the database, and running `intake` commands, for the
erasure tests."""

from __future__ import annotations

import os
import subprocess
from typing import Any

import asyncpg

from service.settings import Settings
from tests.support.integrity import intake as run_intake

_TABLES = """
SELECT format('%I.%I', table_schema, table_name) AS name
FROM information_schema.tables
WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"""


async def tables_containing(db: asyncpg.Connection, needle: str) -> set[str]:
    """Every table and view (of every schema) with a row whose text form contains `needle`."""
    found = set()
    for table in [r["name"] for r in await db.fetch(_TABLES)]:
        if await db.fetchval(f"SELECT EXISTS (SELECT 1 FROM {table} t WHERE strpos(t::text, $1) > 0)", needle):
            found.add(table)
    return found


def patient(first: str, last: str, email: str, born: str) -> dict[str, Any]:
    """A submission's patient block."""
    return {"first_name": first, "last_name": last, "email": email, "date_of_birth": born}


async def intake(settings: Settings, *args: str, env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`intake ARGS` against the test's database (app role, owner for admin), to completion."""
    environment = {**os.environ, "DATABASE_URL": settings.database_url or "",
                   "OWNER_DATABASE_URL": settings.owner_database_url or "", **(env or {})}
    return await run_intake(environment, *args, timeout=timeout)
