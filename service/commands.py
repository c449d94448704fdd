"""What the `intake` subcommands do, once parsed: each opens what it needs, runs, prints, returns
an exit code (0 success, 1 failure or failed check). Parsing lives in service/cli.py."""

from __future__ import annotations

import argparse
import json
import sys

import asyncpg

from projections import status as projection_status
from projections.projector import Projector
from service import admin, migrations, roles
from service.db import create_pool
from service.keyring import load_keyring
from service.settings import Settings

# Running APIs cache a key's lookup for AUTH_CACHE_TTL_S (service/keys.py).
REVOCATION_BOUND = "running APIs refuse it within AUTH_CACHE_TTL_S seconds (default 10)"


async def connect_as_owner(settings: Settings) -> asyncpg.Connection:
    """One connection for a short administrative command, as the schema's owner.

    Migrations need the owner; businesses and API keys are written only by these commands, so
    the app role can read them but not write them: a compromised API cannot mint itself a key."""
    return await asyncpg.connect(settings.require_owner_database_url(),
                                 timeout=settings.db_connect_timeout_ms / 1000)


async def migrate(args: argparse.Namespace, settings: Settings) -> int:
    """`intake migrate [--check]`: as the owner, then the app's login role (service/roles.py)."""
    files = migrations.load_migrations()
    conn = await connect_as_owner(settings)
    try:
        drift = await migrations.check(conn, files)
        if args.check:
            print(drift.describe(), file=sys.stdout if drift.clean else sys.stderr)
            return 0 if drift.clean else 1
        if drift.changed or drift.missing:
            print(f"intake: error: refusing to migrate: {drift.describe()}", file=sys.stderr)
            return 1
        applied = await migrations.migrate(conn, files)
        print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:04d}_{m.name}" for m in applied))
        if settings.database_url:
            login = await roles.provision(conn, settings.database_url)
            print(login.describe(), file=sys.stdout if login.confined else sys.stderr)
        return 0
    finally:
        await conn.close()


async def create_business(args: argparse.Namespace, settings: Settings) -> int:
    """`intake businesses create SLUG --name NAME`."""
    conn = await connect_as_owner(settings)
    try:
        business_id = await admin.create_business(conn, args.slug, args.name)
    finally:
        await conn.close()
    print(f"created business {args.slug} (id {business_id})")
    return 0


async def businesses(args: argparse.Namespace, settings: Settings) -> int:
    """`intake businesses create | limits`."""
    return await (create_business if args.action == "create" else business_limits)(args, settings)


async def business_limits(args: argparse.Namespace, settings: Settings) -> int:
    """`intake businesses limits SLUG [CLASS=COUNT/SECONDSs …] [--reset]`: running APIs pick a
    change up within AUTH_CACHE_TTL_S (the limits ride on the cached key lookup)."""
    conn = await connect_as_owner(settings)
    try:
        limits = await admin.business_limits(conn, args.slug, rules=",".join(args.rules),
                                             reset=args.reset)
    finally:
        await conn.close()
    print(f"{args.slug}: " + (", ".join(f"{k}={v}" for k, v in sorted(limits.items()))
                              or f"the defaults ({settings.rate_limit_per_business})"))
    return 0


async def keys(args: argparse.Namespace, settings: Settings) -> int:
    """`intake keys create | revoke | list`."""
    actions = {"create": _create_key, "revoke": _revoke_key, "list": _list_keys}
    conn = await connect_as_owner(settings)
    try:
        return await actions[args.action](conn, args)
    finally:
        await conn.close()


async def _create_key(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    created = await admin.create_key(conn, business=args.business, scopes=args.scopes, admin=args.admin)
    if args.json:
        print(json.dumps({"key": created.key, "key_id": str(created.key_id), "business": created.business,
                          "scopes": list(created.scopes)}))
    else:
        print(created.key)
    return 0


async def _revoke_key(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    revoked = await admin.revoke_key(conn, args.key_id)
    if revoked.already_revoked:
        print(f"key {revoked.key_id} was already revoked at {revoked.revoked_at.isoformat()}")
    else:
        print(f"revoked key {revoked.key_id}; {REVOCATION_BOUND}")
    return 0


async def _list_keys(conn: asyncpg.Connection, args: argparse.Namespace) -> int:
    found = await admin.list_keys(conn, business=args.business)
    rows = [{"key_id": str(k.key_id), "business": k.business, "admin": k.is_admin, "scopes": list(k.scopes),
             "created_at": k.created_at.isoformat(),
             "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None} for k in found]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'KEY_ID':36}  {'BUSINESS':20}  {'CREATED_AT':32}  {'REVOKED_AT':32}  SCOPES")
    for row in rows:
        business = "(admin)" if row["admin"] else row["business"]
        print(f"{row['key_id']:36}  {business:20}  {row['created_at']:32}  {row['revoked_at'] or '-':32}  "
              + " ".join(row["scopes"]))
    return 0


async def projections(args: argparse.Namespace, settings: Settings) -> int:
    """`intake projections status | sweep | retry [NAME]`; exit 1 while anything is parked."""
    pool = await create_pool(settings, application_name="intake-cli", min_size=1)
    try:
        projector = Projector(pool, load_keyring(settings))
        if args.action == "sweep":
            print(f"applied {await projector.sweep()} event(s)")
            return 0
        if args.action == "retry":
            async with pool.acquire() as conn:
                streams = await projection_status.retry(conn, args.projection)
            await projector.catch_up(*streams)
            print(f"retried {len(streams)} stream(s)")
            return 0
        async with pool.acquire() as conn:
            rows = await projection_status.status(conn)
        _print_status(rows)
        return 1 if any(row.parked for row in rows) else 0
    finally:
        await pool.close()


def _print_status(rows: list[projection_status.ProjectionStatus]) -> None:
    print(f"{'projection':<15}{'applied':>10}{'head':>10}{'lag':>8}{'lag s':>9}{'parked':>8}")
    for row in rows:
        print(f"{row.projection:<15}{row.applied_position:>10}{row.head_position:>10}{row.lag_events:>8}"
              f"{row.lag_seconds:>9.1f}{row.parked:>8}")
