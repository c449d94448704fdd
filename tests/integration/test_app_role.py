"""`intake migrate` provisions DATABASE_URL's user as the app's login role: once, however often it
runs; with the password the URL carries, checked by a real SCRAM login; and never with owner rights."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from service.roles import APP_GROUP, with_login

ROOT = Path(__file__).resolve().parents[2]
RELOAD_DEADLINE_S = 10.0
# Quotes, URL-reserved characters and a non-ASCII letter: quoting and SASLprep both matter.
FIRST_PASSWORD = "first pässword 'q\" @:/%"
SECOND_PASSWORD = "second password"


def migrate(owner_url: str, app_url: str) -> subprocess.CompletedProcess[str]:
    """`intake migrate` as an operator runs it, with both URLs."""
    return subprocess.run([sys.executable, "-m", "service.cli", "migrate"], capture_output=True, text=True,
                          env={**os.environ, "OWNER_DATABASE_URL": owner_url, "DATABASE_URL": app_url},
                          cwd=ROOT, timeout=60)


async def logs_in(url: str) -> bool:
    """Whether PostgreSQL accepts this URL's user and password."""
    try:
        conn = await asyncpg.connect(url)
    except asyncpg.InvalidPasswordError:
        return False
    await conn.close()
    return True


@contextlib.asynccontextmanager
async def passwords_required(db: asyncpg.Connection, role: str, url: str) -> AsyncIterator[None]:
    """The suite's server trusts everyone; for `role` only, demand its SCRAM password while the block runs."""
    hba = Path(await db.fetchval("SHOW hba_file"))
    original = hba.read_text()
    hba.write_text(f"host all {role} 127.0.0.1/32 scram-sha-256\n{original}")
    try:
        await db.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + RELOAD_DEADLINE_S
        while await logs_in(with_login(url, role, "not the password")):  # still trusted: not reloaded yet
            assert time.monotonic() < deadline, "pg_hba.conf was not reloaded in time"
            await asyncio.sleep(0.05)
        yield
    finally:
        hba.write_text(original)
        await db.execute("SELECT pg_reload_conf()")


async def test_migrate_twice_makes_one_login_role_and_a_changed_password_replaces_the_old(database_url, db):
    role = f"intake_login_{os.getpid()}"
    first, second = with_login(database_url, role, FIRST_PASSWORD), with_login(database_url, role, SECOND_PASSWORD)
    try:
        runs = [migrate(database_url, first), migrate(database_url, first)]
        async with passwords_required(db, role, database_url):
            assert await logs_in(first) and not await logs_in(second)
            runs.append(migrate(database_url, second))
            assert await logs_in(second) and not await logs_in(first)
        members = await db.fetch("SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                                 "JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = $1", role)
    finally:
        await db.execute(f'DROP ROLE IF EXISTS "{role}"')
    assert [run.returncode for run in runs] == [0, 0, 0], [run.stderr for run in runs]
    assert f"created login role {role}" in runs[0].stdout
    assert all(f"login role {role} is a member of {APP_GROUP}" in run.stdout for run in runs[1:])
    assert [m["rolname"] for m in members] == [APP_GROUP]
    printed = "".join(run.stdout + run.stderr for run in runs)
    assert "pässword" not in printed and SECOND_PASSWORD not in printed


async def test_migrate_warns_when_the_app_would_connect_as_the_owner(database_url):
    result = migrate(database_url, database_url)
    assert result.returncode == 0
    assert "warning: DATABASE_URL connects as the owner, postgres: the app runs with owner rights" in result.stderr


async def test_migrate_leaves_a_superuser_named_by_database_url_alone_and_warns(database_url, db):
    role = f"intake_super_{os.getpid()}"
    await db.execute(f'CREATE ROLE "{role}" LOGIN SUPERUSER')
    try:
        result = migrate(database_url, with_login(database_url, role, "whatever"))
        still = await db.fetchrow("SELECT rolsuper, EXISTS (SELECT FROM pg_auth_members WHERE member = r.oid) AS member "
                                  "FROM pg_roles r WHERE rolname = $1", role)
    finally:
        await db.execute(f'DROP ROLE IF EXISTS "{role}"')
    assert result.returncode == 0
    assert f"warning: DATABASE_URL's user {role} is a superuser, owns tables or may change the event log" in result.stderr
    assert dict(still) == {"rolsuper": True, "member": False}  # neither demoted nor granted anything


@pytest.mark.parametrize("url_form", ["userinfo", "query"])
async def test_the_login_is_read_from_either_form_of_url(database_url, db, url_form):
    role = f"intake_form_{os.getpid()}"
    parts = urlsplit(database_url)
    app_url = (with_login(database_url, role, "pw") if url_form == "userinfo" else urlunsplit(
        parts._replace(netloc=f"{parts.hostname}:{parts.port}", query=urlencode({"user": role, "password": "pw"}))))
    try:
        result = migrate(database_url, app_url)
        exists = await db.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", role, APP_GROUP)
    finally:
        await db.execute(f'DROP ROLE IF EXISTS "{role}"')
    assert result.returncode == 0 and f"created login role {role}" in result.stdout and exists


# Each a role that is not a superuser and owns nothing, yet could change the log.
@pytest.mark.parametrize("grant", ["GRANT postgres TO {role}", "GRANT pg_write_all_data TO {role}",
                                   "GRANT TRUNCATE ON events TO {role}"])
async def test_migrate_leaves_a_role_that_could_change_the_log_alone_and_warns(database_url, db, grant):
    role = f"intake_sly_{os.getpid()}"
    await db.execute(f'CREATE ROLE "{role}" LOGIN')
    try:
        await db.execute(grant.format(role=f'"{role}"'))
        result = migrate(database_url, with_login(database_url, role, "whatever"))
        in_app_group = await db.fetchval("SELECT pg_has_role($1, $2, 'MEMBER')", role, APP_GROUP)
    finally:
        await db.execute(f'REVOKE TRUNCATE ON events FROM "{role}"')
        await db.execute(f'DROP ROLE IF EXISTS "{role}"')
    assert result.returncode == 0
    assert f"warning: DATABASE_URL's user {role} is a superuser, owns tables or may change the event log" in result.stderr
    assert not in_app_group  # left as it was, not quietly made the app's login
