"""The `intake` command line. Exit codes: 0 success, 1 failure or failed check, 2 usage error."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

import asyncpg

from service import admin, migrations
from service.settings import Settings

# Running APIs cache a key's lookup for AUTH_CACHE_TTL_S (service/http/auth.py).
REVOCATION_BOUND = "running APIs refuse it within AUTH_CACHE_TTL_S seconds (default 10)"


def build_parser() -> argparse.ArgumentParser:
    """The full command tree (also read by the compose.yaml structure test)."""
    parser = argparse.ArgumentParser(prog="intake", description="Event-sourced consult intake.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)

    dev = commands.add_parser("dev", help="everything for a first run on one machine")
    dev.add_argument("--host", default="127.0.0.1")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--state-dir", default=".state", help="where embedded PostgreSQL/Redis keep data")

    serve = commands.add_parser("serve", help="run the HTTP API")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1)

    commands.add_parser("worker", help="run the outbox relay and the projector workers")

    projections = commands.add_parser("projections", help="read models").add_subparsers(dest="action", required=True)
    projections.add_parser("status", help="applied vs head position, lag, parked streams")
    projections.add_parser("sweep", help="catch up every stream whose projections lag the log")
    retry = projections.add_parser("retry", help="un-park parked streams and apply them again")
    retry.add_argument("projection", nargs="?", help="only this projection")

    migrate = commands.add_parser("migrate", help="apply pending migrations")
    migrate.add_argument("--check", action="store_true", help="exit 1 if the schema differs from sql/migrations")

    businesses = commands.add_parser("businesses", help="manage businesses").add_subparsers(dest="action", required=True)
    create_business = businesses.add_parser("create", help="create a business")
    create_business.add_argument("slug")
    create_business.add_argument("--name", required=True)

    keys = commands.add_parser("keys", help="manage API keys").add_subparsers(dest="action", required=True)
    create_key = keys.add_parser("create", help="create an API key (shown once)")
    bound = create_key.add_mutually_exclusive_group(required=True)
    bound.add_argument("--business", help="the business slug the key is bound to")
    bound.add_argument("--admin", action="store_true", help="an admin key for every business")
    create_key.add_argument("--scopes", nargs="+", default=[], help="scopes for a business key")
    create_key.add_argument("--json", action="store_true", help="print JSON")
    revoke_help = f"revoke an API key (the row is kept for the audit trail); {REVOCATION_BOUND}"
    revoke_key = keys.add_parser("revoke", help=revoke_help, description=revoke_help + ".")
    revoke_key.add_argument("key_id", type=uuid.UUID, help="the key_id printed by `keys create --json`")
    list_keys = keys.add_parser("list", help="list API keys: ids, scopes, revocations (never secrets)")
    list_keys.add_argument("--business", help="only the keys of this business slug")
    list_keys.add_argument("--json", action="store_true", help="print JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `intake` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "keys" and args.action == "create" and args.business and not args.scopes:
        parser.error("keys create --business needs --scopes")
    handlers: dict[str, Callable[[argparse.Namespace, Settings], int]] = {
        "dev": _dev, "serve": _serve, "migrate": _migrate, "businesses": _businesses, "keys": _keys,
        "worker": _worker, "projections": _projections,
    }
    try:
        return handlers[args.command](args, Settings.from_env())
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # the CLI's one edge: a clear line, a traceback only on --debug
        if args.debug:
            raise
        print(f"intake: error: {error}", file=sys.stderr)
        return 1


def _run(coro: Coroutine[Any, Any, int]) -> int:
    return asyncio.run(coro)


async def _connect(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(settings.require_database_url(), timeout=settings.db_connect_timeout_ms / 1000)


def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> int:
        files = migrations.load_migrations()
        conn = await _connect(settings)
        try:
            if args.check:
                drift = await migrations.check(conn, files)
                print(drift.describe(), file=sys.stdout if drift.clean else sys.stderr)
                return 0 if drift.clean else 1
            drift = await migrations.check(conn, files)
            if drift.changed or drift.missing:
                print(f"intake: error: refusing to migrate: {drift.describe()}", file=sys.stderr)
                return 1
            applied = await migrations.migrate(conn, files)
            print(f"applied {len(applied)} migration(s)" + "".join(f"\n  {m.version:04d}_{m.name}" for m in applied))
            return 0
        finally:
            await conn.close()
    return _run(run())


def _businesses(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> int:
        conn = await _connect(settings)
        try:
            business_id = await admin.create_business(conn, args.slug, args.name)
        finally:
            await conn.close()
        print(f"created business {args.slug} (id {business_id})")
        return 0
    return _run(run())


def _keys(args: argparse.Namespace, settings: Settings) -> int:
    actions = {"create": _create_key, "revoke": _revoke_key, "list": _list_keys}

    async def run() -> int:
        conn = await _connect(settings)
        try:
            return await actions[args.action](conn, args)
        finally:
            await conn.close()
    return _run(run())


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
    keys = await admin.list_keys(conn, business=args.business)
    rows = [{"key_id": str(k.key_id), "business": k.business, "admin": k.is_admin, "scopes": list(k.scopes),
             "created_at": k.created_at.isoformat(),
             "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None} for k in keys]
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'KEY_ID':36}  {'BUSINESS':20}  {'CREATED_AT':32}  {'REVOKED_AT':32}  SCOPES")
    for row in rows:
        business = "(admin)" if row["admin"] else row["business"]
        print(f"{row['key_id']:36}  {business:20}  {row['created_at']:32}  {row['revoked_at'] or '-':32}  "
              + " ".join(row["scopes"]))
    return 0


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from service.runner import serve
    return serve(settings, host=args.host, port=args.port, workers=args.workers)


def _worker(args: argparse.Namespace, settings: Settings) -> int:
    from projections.worker import main as worker_main
    return worker_main(settings)


def _projections(args: argparse.Namespace, settings: Settings) -> int:
    from projections.operations import run_command
    return _run(run_command(args.action, settings, projection=getattr(args, "projection", None)))


def _dev(args: argparse.Namespace, settings: Settings) -> int:
    from service.dev import run_dev
    return run_dev(settings, host=args.host, port=args.port, state_dir=args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
