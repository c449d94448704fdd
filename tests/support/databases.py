"""Test databases: a migrated template, cloned per test with CREATE DATABASE … TEMPLATE (procrastinate's way),
which costs a file copy instead of running every migration again."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from service import migrations, roles
from service.devstack import EmbeddedPostgres

# The suite's app role: the `settings` fixture connects as it, so every test that goes through the
# app proves it works with least privilege. (Trust auth ignores the password; it keeps the URL real.)
APP_USER = "intake_test_app"
APP_PASSWORD = "test-only 'app' password"


def app_url(url: str) -> str:
    """`url` (the superuser's) as the suite's app role."""
    return roles.with_login(url, APP_USER, APP_PASSWORD)


async def create_template(postgres: EmbeddedPostgres, name: str) -> str:
    """(Re)create database `name` with every migration applied and the app role provisioned, the way
    `intake migrate` does both; returns its name."""
    conn = await asyncpg.connect(postgres.url())
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name}")
        await conn.execute(f"CREATE DATABASE {name}")
    finally:
        await conn.close()
    conn = await asyncpg.connect(postgres.url(name))
    try:
        await migrations.migrate(conn, migrations.load_migrations())
        provisioned = await roles.provision(conn, app_url(postgres.url(name)))
    finally:
        await conn.close()
    assert provisioned.confined, provisioned.describe()
    return name


@contextlib.asynccontextmanager
async def cloned_database(postgres: EmbeddedPostgres, template: str, name: str) -> AsyncIterator[str]:
    """A database cloned from the migrated template for as long as the block runs; yields its URL."""
    conn = await asyncpg.connect(postgres.url())
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {template}")
    finally:
        await conn.close()
    try:
        yield postgres.url(name)
    finally:
        conn = await asyncpg.connect(postgres.url())
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        finally:
            await conn.close()
