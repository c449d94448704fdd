"""`intake keys create` grants only what it can mean: no admin scope on a business key (it would
grant nothing, silently), no unknown scope, no scopes beside --admin, no business key without one."""

from __future__ import annotations

import os
import subprocess
import sys

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
