"""`intake migrate` applies files once and `--check` catches drift."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg

from service import migrations

ROOT = Path(__file__).resolve().parents[2]


def intake(*args: str, database_url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "service.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "DATABASE_URL": database_url}, cwd=ROOT, timeout=60)


async def test_check_passes_on_a_migrated_database_and_migrate_is_safe_to_rerun(database_url):
    assert intake("migrate", "--check", database_url=database_url).returncode == 0
    rerun = intake("migrate", database_url=database_url)
    assert rerun.returncode == 0 and "applied 0 migration(s)" in rerun.stdout


async def test_check_fails_on_a_modified_migration(database_url, tmp_path):
    files = migrations.load_migrations()
    edited = tmp_path / "migrations"
    shutil.copytree(migrations.MIGRATIONS_DIR, edited)
    first = edited / f"{files[0].version:04d}_{files[0].name}.sql"
    first.write_text(first.read_text() + "\n-- an innocent-looking edit\n")
    conn = await asyncpg.connect(database_url)
    try:
        drift = await migrations.check(conn, migrations.load_migrations(edited))
    finally:
        await conn.close()
    assert drift.changed == (files[0].version,) and not drift.clean


async def test_check_command_exits_1_when_an_applied_migration_changed(database_url, db):
    await db.execute("UPDATE schema_migrations SET checksum = 'tampered' WHERE version = 1")
    result = intake("migrate", "--check", database_url=database_url)
    assert result.returncode == 1
    assert "changed since applied: 0001" in result.stderr
    assert intake("migrate", database_url=database_url).returncode == 1  # and refuses to migrate over it


async def test_check_reports_a_missing_migration_file(database_url, db):
    await db.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES (9999, 'gone', 'x')")
    result = intake("migrate", "--check", database_url=database_url)
    assert result.returncode == 1 and "applied but missing: 9999" in result.stderr


async def test_migrate_creates_the_schema_on_an_empty_database(postgres):
    admin = await asyncpg.connect(postgres.url())
    try:
        await admin.execute("DROP DATABASE IF EXISTS migrate_empty WITH (FORCE)")
        await admin.execute("CREATE DATABASE migrate_empty")
        url = postgres.url("migrate_empty")
        assert intake("migrate", "--check", database_url=url).returncode == 1  # everything pending
        assert intake("migrate", database_url=url).returncode == 0
        assert intake("migrate", "--check", database_url=url).returncode == 0
    finally:
        await admin.execute("DROP DATABASE IF EXISTS migrate_empty WITH (FORCE)")
        await admin.close()
