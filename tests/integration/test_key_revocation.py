"""Revoking a leaked API key: through the real CLI, refused by the API within the auth cache's TTL,
the row kept for the audit trail, and `keys list` never showing a secret."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from service import admin
from service.cli import build_parser
from service.db import create_pool
from service.keys import ApiKeys, InvalidApiKey
from tests.support.servers import running_api

ROOT = Path(__file__).resolve().parents[2]
CONSULTATIONS = "/v1/businesses/acme/consultations"
SHORT_TTL_S = 1
# Past the TTL, a refusal needs one uncached lookup; the margin absorbs a slow CI machine.
REFUSAL_DEADLINE_S = SHORT_TTL_S + 5


async def intake(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`intake ARGS` as a real process against the test's database, off the event loop."""
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "service.cli", *args], capture_output=True, text=True,
        cwd=ROOT, timeout=60, env={**os.environ, "DATABASE_URL": database_url})


async def until_refused(client: httpx.AsyncClient, key: str) -> httpx.Response:
    """Poll a read with `key` until it is refused, or fail at the deadline."""
    deadline = time.monotonic() + REFUSAL_DEADLINE_S
    while True:
        response = await client.get(CONSULTATIONS, headers={"Authorization": f"Bearer {key}"})
        if response.status_code != 200 or time.monotonic() > deadline:
            return response
        await asyncio.sleep(0.05)


async def test_a_revoked_key_gets_the_unknown_key_401_once_the_cache_ttl_has_passed(settings, tenant):
    created = await intake(settings.owner_database_url, "keys", "create", "--business", "acme",
                           "--scopes", "consultations:read", "--json")
    key, key_id = json.loads(created.stdout)["key"], json.loads(created.stdout)["key_id"]
    async with running_api(dataclasses.replace(settings, auth_cache_ttl_s=SHORT_TTL_S)) as base, \
            httpx.AsyncClient(base_url=base) as client:
        before = await client.get(CONSULTATIONS, headers={"Authorization": f"Bearer {key}"})
        revoked = await intake(settings.owner_database_url, "keys", "revoke", key_id)
        after = await until_refused(client, key)
        unknown = await client.get(CONSULTATIONS, headers={"Authorization": "Bearer ik_" + "x" * 43})
        others = await client.get(CONSULTATIONS, headers={"Authorization": f"Bearer {tenant.key}"})
    assert before.status_code == 200
    assert revoked.returncode == 0 and f"revoked key {key_id}" in revoked.stdout
    assert after.status_code == 401 and after.headers["content-type"] == "application/problem+json"
    assert after.json() == unknown.json() and after.headers["www-authenticate"] == "Bearer"
    assert others.status_code == 200


async def test_a_revoked_key_is_refused_once_its_cached_lookup_is_ttl_old(settings, tenant, db):
    created = await admin.create_key(db, business="acme", scopes=["consultations:read"], admin=False)
    now = [0.0]
    pool = await create_pool(settings, application_name="intake-test", min_size=0)
    try:
        keys = ApiKeys(pool, ttl_s=settings.auth_cache_ttl_s, acquire_timeout=2, clock=lambda: now[0])
        bearer = f"Bearer {created.key}"
        assert (await keys.authenticate(bearer)).key_id == created.key_id
        await admin.revoke_key(db, created.key_id)
        now[0] = settings.auth_cache_ttl_s - 0.1
        assert (await keys.authenticate(bearer)).key_id == created.key_id  # the documented window
        now[0] = settings.auth_cache_ttl_s
        with pytest.raises(InvalidApiKey):
            await keys.authenticate(bearer)
    finally:
        await pool.close()


async def test_revoking_an_unknown_key_exits_1_with_a_clear_message(database_url):
    unknown = uuid.uuid4()
    result = await intake(database_url, "keys", "revoke", str(unknown))
    malformed = await intake(database_url, "keys", "revoke", "not-a-uuid")
    assert result.returncode == 1 and result.stderr.strip() == f"intake: error: no API key with id {unknown}"
    assert malformed.returncode == 2 and "invalid UUID value" in malformed.stderr


async def test_revoking_twice_is_harmless_and_keeps_the_row_and_first_revocation_time(database_url, tenant, db):
    created = await admin.create_key(db, business="acme", scopes=["audit:read"], admin=False)
    first = await intake(database_url, "keys", "revoke", str(created.key_id))
    second = await intake(database_url, "keys", "revoke", str(created.key_id))
    rows = await db.fetch("SELECT revoked_at FROM api_keys WHERE id = $1", created.key_id)
    assert first.returncode == 0 and second.returncode == 0
    assert len(rows) == 1 and rows[0]["revoked_at"] is not None
    assert f"already revoked at {rows[0]['revoked_at'].isoformat()}" in second.stdout


async def test_keys_list_shows_scopes_and_revocations_but_never_a_secret_or_hash(database_url, tenant,
                                                                                 other_tenant, db):
    audit = await admin.create_key(db, business="acme", scopes=["audit:read"], admin=False)
    root = await admin.create_key(db, business=None, scopes=[], admin=True)
    await admin.revoke_key(db, audit.key_id)
    acme = await intake(database_url, "keys", "list", "--business", "acme", "--json")
    table = await intake(database_url, "keys", "list")
    nowhere = await intake(database_url, "keys", "list", "--business", "nowhere")
    hashes = [record["key_hash"].hex() for record in await db.fetch("SELECT key_hash FROM api_keys")]
    for output in (acme.stdout, table.stdout):
        assert "ik_" not in output and not any(digest in output for digest in hashes)
    listed = {row["key_id"]: row for row in json.loads(acme.stdout)}
    assert len(listed) == 3 and {row["business"] for row in listed.values()} == {"acme"}
    assert listed[str(audit.key_id)]["scopes"] == ["audit:read"] and listed[str(audit.key_id)]["revoked_at"]
    assert [row["revoked_at"] for row in listed.values()].count(None) == 2
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 1 + 6
    assert str(root.key_id) in table.stdout and "(admin)" in table.stdout
    assert nowhere.returncode == 1 and "no business 'nowhere'" in nowhere.stderr


def test_revoke_help_states_how_long_a_revoked_key_may_still_work(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["keys", "revoke", "--help"])
    assert "AUTH_CACHE_TTL_S" in capsys.readouterr().out
