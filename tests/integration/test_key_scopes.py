"""`intake keys create` grants only what it can mean: no admin scope on a business key (it would
grant nothing, silently), no unknown scope, no scopes beside --admin, no business key without one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from service import admin
from tests.support.tenants import make_tenant


@pytest.mark.parametrize(("business", "scopes", "is_admin", "says"), [
    ("acme", ["admin"], False, "the admin scope belongs to admin keys"),
    ("acme", ["consultations:read", "admin"], False, "the admin scope belongs to admin keys"),
    ("acme", ["consultations:write"], False, "unknown scopes: consultations:write"),
    ("acme", [], False, "a business key needs at least one scope"),
    (None, ["consultations:read"], True, "an admin key holds every scope"),
])
async def test_a_key_that_would_not_mean_what_it_says_is_refused_and_not_stored(db, business, scopes, is_admin, says):
    await make_tenant(db, "acme")
    before = await db.fetchval("SELECT count(*) FROM api_keys")
    with pytest.raises(admin.AdminError, match=says):
        await admin.create_key(db, business=business, scopes=scopes, admin=is_admin)
    assert await db.fetchval("SELECT count(*) FROM api_keys") == before


async def test_the_cli_refuses_the_admin_scope_on_a_business_key_with_exit_1(db, database_url):
    await make_tenant(db, "acme")
    before = await db.fetchval("SELECT count(*) FROM api_keys")
    done = subprocess.run([sys.executable, "-m", "service.cli", "keys", "create", "--business", "acme",
                           "--scopes", "admin"], env={**os.environ, "DATABASE_URL": database_url},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == "intake: error: the admin scope belongs to admin keys: create one with --admin"
    assert done.stdout == ""
    assert await db.fetchval("SELECT count(*) FROM api_keys") == before


@pytest.mark.parametrize("scopes", [["submissions:write,consultations:read"],
                                    ["submissions:write", "consultations:read"],
                                    ["submissions:write,", " consultations:read"]])
async def test_keys_create_takes_scopes_space_or_comma_separated(db, database_url, scopes):
    await make_tenant(db, "acme")
    done = subprocess.run([sys.executable, "-m", "service.cli", "keys", "create", "--business", "acme",
                           "--json", "--scopes", *scopes], env={**os.environ, "DATABASE_URL": database_url},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    key_id = json.loads(done.stdout)["key_id"]
    stored = await db.fetchval("SELECT scopes FROM api_keys WHERE id = $1", uuid.UUID(key_id))
    assert sorted(stored) == ["consultations:read", "submissions:write"]


async def test_businesses_limits_sets_merges_and_resets_a_businesss_own_limits(db, database_url):
    await make_tenant(db, "acme")
    env = {**os.environ, "DATABASE_URL": database_url}

    def limits(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "service.cli", "businesses", "limits", "acme", *argv],
                              env=env, capture_output=True, text=True, timeout=60)

    assert limits("submit=500/1s").stdout.strip() == "acme: submit=500/1s"
    assert limits("read=2000/10s").stdout.strip() == "acme: read=2000/10s, submit=500/1s"
    assert json.loads(await db.fetchval("SELECT rate_limits::text FROM businesses WHERE slug = 'acme'")) == {
        "read": "2000/10s", "submit": "500/1s"}
    bad = limits("upload=1/1s")
    assert bad.returncode == 1 and "CLASS=COUNT/SECONDS" in bad.stderr
    assert limits("--reset").stdout.startswith("acme: the defaults (")
    assert await db.fetchval("SELECT rate_limits::text FROM businesses WHERE slug = 'acme'") == "{}"
