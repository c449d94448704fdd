"""The one PostgreSQL of a benchmark run, and the few statements the harness needs."""

from __future__ import annotations

import subprocess
from pathlib import Path

from service.devstack import EmbeddedPostgres, pg_bin

BASELINE_SCHEMA = Path(__file__).with_name("baseline_schema.sql")
# 64 pgbench clients, two workers' pools and the real service's own connections must fit.
# track_commit_timestamp: the webhook benchmark measures from each event's commit (bench/webhooks.py).
SETTINGS = {"max_connections": "300", "max_wal_size": "8GB", "track_commit_timestamp": "on"}
PSQL_TIMEOUT_S = 120


def start_postgres(data_dir: Path) -> EmbeddedPostgres:
    """A durable (fsync on) server: what a deployment would run, so the honest figure."""
    postgres = EmbeddedPostgres(data_dir, durable=True, settings=SETTINGS)
    postgres.start()
    return postgres


def psql_argv(url: str) -> list[str]:
    """psql, quiet and unaligned, stopping at the first error; add `-c SQL`."""
    return [str(pg_bin("psql")), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-d", url]


def psql(url: str, sql: str) -> str:
    """Run SQL through psql, stopping at the first error."""
    done = subprocess.run(
        [*psql_argv(url), "-c", sql],
        capture_output=True, text=True, timeout=PSQL_TIMEOUT_S,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"psql failed: {done.stderr.strip()}")
    return done.stdout.strip()


def create_database(postgres: EmbeddedPostgres, name: str) -> str:
    """Create an empty database and return its URL."""
    psql(postgres.url(), f'CREATE DATABASE "{name}"')
    return postgres.url(name)


def drop_database(postgres: EmbeddedPostgres, name: str) -> None:
    """Drop a measured database, so that its autovacuum work cannot land in the next measurement."""
    psql(postgres.url(), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    checkpoint(postgres.url())


def create_baseline_database(postgres: EmbeddedPostgres, name: str) -> str:
    """A database holding only the events + outbox tables the baselines write."""
    url = create_database(postgres, name)
    psql(url, BASELINE_SCHEMA.read_text())
    return url


def reset_baseline_tables(url: str) -> None:
    """Empty the baseline tables and flush dirty pages, so each measurement starts alike."""
    psql(url, "TRUNCATE events, outbox RESTART IDENTITY")
    checkpoint(url)


def checkpoint(url: str) -> None:
    # Without this, the previous measurement's dirty pages get written during the next one.
    psql(url, "CHECKPOINT")


def count_events(url: str) -> int:
    """Rows in the events table (the baselines' and the service's alike)."""
    return int(psql(url, "SELECT count(*) FROM events"))


def server_version(url: str) -> str:
    return psql(url, "SHOW server_version")
