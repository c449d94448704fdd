"""Running `intake events replay` as a real process, and filling the log fast with valid events."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg

ROOT = Path(__file__).resolve().parents[2]

# One valid consult.submitted.v1 per row of generate_series (events/types.py: ConsultSubmitted), each on
# its own stream: $1 business id, $2 how many, $3 a prefix for customer ids and streams.
GENERATED_SUBMISSIONS = """
INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, business_id, payload, metadata)
SELECT gen_random_uuid(), $3 || i, 1, 'consult.submitted', 1, $1,
       jsonb_build_object(
           'type', 'consult.submitted.v1', 'submission_id', gen_random_uuid(),
           'consultation_id', gen_random_uuid(), 'patient_id', gen_random_uuid(),
           'customer_id', $3 || i, 'product_id', 'prod_abc',
           'patient', jsonb_build_object('first_name', 'Gen', 'last_name', 'Erated', 'email', 'gen@example.com',
                                         'date_of_birth', '1990-01-01', 'phone', NULL),
           'chief_complaint', 'Generated', 'medical_history', NULL, 'answers', '[]'::jsonb,
           'submitted_at', '2026-01-01T00:00:00Z'),
       '{"request_id": "gen", "actor": "cli:test", "correlation_id": "gen"}'::jsonb
FROM generate_series(1, $2) AS i
"""


async def generate_submissions(conn: asyncpg.Connection, business_id: int, count: int, prefix: str = "gen_") -> None:
    """`count` valid submissions in one statement (as the owner: the app role may not skip the outbox)."""
    await conn.execute(GENERATED_SUBMISSIONS, business_id, count, prefix)


def cli_env(database_url: str) -> dict[str, str]:
    """The environment of an `intake` process against the test's database."""
    return {**os.environ, "DATABASE_URL": database_url}


def replay_argv(*args: str) -> list[str]:
    """`intake events replay ARGS`, as a module run by this interpreter."""
    return [sys.executable, "-m", "service.cli", "events", "replay", *args]


async def replay(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the command to completion off the event loop."""
    return await asyncio.to_thread(subprocess.run, replay_argv(*args), capture_output=True, text=True, cwd=ROOT,
                                   timeout=120, env=cli_env(database_url))


async def replay_jsonl(database_url: str, *args: str) -> list[dict[str, Any]]:
    """The JSON lines of a run that must succeed."""
    done = await replay(database_url, "--format", "jsonl", *args)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]
