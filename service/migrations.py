"""Numbered plain-SQL migrations from `sql/migrations`, each applied once in its own transaction.

Each applied file is recorded with its SHA-256, so an edited or deleted
migration is detected (`intake migrate --check`) instead of silently drifting.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from events.sqlfiles import SQL_DIR

MIGRATIONS_DIR = SQL_DIR / "migrations"
_FILE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Any constant works; it only has to be the same for every intake process, so
# that two `intake migrate` runs at once apply each file exactly once.
_ADVISORY_LOCK = 7_204_511_993

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """SHA-256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class Drift:
    """How the database's applied migrations differ from the files."""

    changed: tuple[int, ...] = ()
    missing: tuple[int, ...] = ()
    pending: tuple[int, ...] = ()

    @property
    def clean(self) -> bool:
        """True when the schema is exactly the files'."""
        return not (self.changed or self.missing or self.pending)

    def describe(self) -> str:
        """One line for an operator."""
        parts = [f"{label}: {', '.join(f'{v:04d}' for v in versions)}"
                 for label, versions in (("changed since applied", self.changed),
                                         ("applied but missing", self.missing), ("pending", self.pending))
                 if versions]
        return "; ".join(parts) or "schema is current"


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """The migration files, in order; a misnamed or duplicate-numbered file is an error."""
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = _FILE.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNNN_name.sql")
        version = int(match[1])
        if version in found:
            raise ValueError(f"two migrations are numbered {version:04d}")
        found[version] = Migration(version, match[2], path.read_text())
    return [found[v] for v in sorted(found)]


async def check(conn: asyncpg.Connection, migrations: list[Migration]) -> Drift:
    """Compare applied migrations with the files."""
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    applied = {r["version"]: r["checksum"] for r in await conn.fetch(
        "SELECT version, checksum FROM schema_migrations")} if exists else {}
    files = {m.version: m.checksum for m in migrations}
    return Drift(
        changed=tuple(v for v in sorted(applied) if v in files and files[v] != applied[v]),
        missing=tuple(v for v in sorted(applied) if v not in files),
        pending=tuple(v for v in sorted(files) if v not in applied),
    )


async def migrate(conn: asyncpg.Connection, migrations: list[Migration]) -> list[Migration]:
    """Apply pending migrations in order; safe to run again and concurrently. Returns what it applied."""
    applied_now = []
    async with conn.transaction():  # under the lock: concurrent CREATE TABLE IF NOT EXISTS can collide
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK)
        await conn.execute(_CREATE_TABLE)
    for migration in migrations:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _ADVISORY_LOCK)
            done = await conn.fetchval("SELECT checksum FROM schema_migrations WHERE version = $1",
                                       migration.version)
            if done is not None:
                continue
            await conn.execute(migration.sql)
            await conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                               migration.version, migration.name, migration.checksum)
            applied_now.append(migration)
    return applied_now
