"""What `intake partners …` and `intake webhooks …` do, once parsed (service/cli.py): as the owner,
like the other administrative commands; secrets are printed once, when made."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from service import partners, webhooks
from service.admin import business_id_of
from service.commands import connect_as_owner
from service.settings import Settings


async def partners_command(args: argparse.Namespace, settings: Settings) -> int:
    """`intake partners add | rotate | list | remove`."""
    return await _with_owner(settings, lambda conn: _PARTNERS[args.action](conn, args, settings))


async def webhooks_command(args: argparse.Namespace, settings: Settings) -> int:
    """`intake webhooks add | list | disable | rotate-secret | deliveries | redeliver`."""
    return await _with_owner(settings, lambda conn: _WEBHOOKS[args.action](conn, args, settings))


async def _with_owner(settings: Settings, run: Callable[[asyncpg.Connection], Awaitable[int]]) -> int:
    conn = await connect_as_owner(settings)
    try:
        return await run(conn)
    finally:
        await conn.close()


async def _partner_add(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    made = await partners.add_partner(conn, webhooks.secret_box(settings), args.business, args.name)
    return _secret_shown(made.secret_id, made.secret, f"partner {made.partner} of {made.business}")


async def _partner_rotate(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    made = await partners.rotate_partner(conn, webhooks.secret_box(settings), args.business, args.name)
    return _secret_shown(made.secret_id, made.secret, f"partner {made.partner} of {made.business} (older "
                         "secrets keep verifying until `intake partners remove --secret ID`)")


async def _partner_list(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    for info in await partners.list_partners(conn, args.business):
        secrets = ", ".join(f"{secret_id} ({created:%Y-%m-%d %H:%M}Z)" for secret_id, created in info.secrets)
        print(f"{info.business}\t{info.partner}\tsecrets: {secrets or 'none'}")
    return 0


async def _partner_remove(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    print(await partners.remove_partner(conn, args.business, args.name, args.secret))
    return 0


def _secret_shown(secret_id: uuid.UUID, secret: str, what: str) -> int:
    print(f"{what}: secret {secret_id}\n{secret}\n(shown once: only its encrypted form is stored)")
    return 0


async def _business(conn: asyncpg.Connection, slug: str | None) -> int | None:
    return None if slug is None else await business_id_of(conn, slug)


async def _webhook_add(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    made = await webhooks.add_endpoint(conn, settings, await business_id_of(conn, args.business), args.url,
                                       args.events)
    return _secret_shown(made.endpoint_id, made.secret, f"endpoint {made.endpoint_id}")


async def _webhook_list(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    for e in await webhooks.list_endpoints(conn, await _business(conn, args.business)):
        state = f"disabled {e.disabled_at:%Y-%m-%d %H:%M}Z" if e.disabled_at else "enabled"
        print(f"{e.endpoint_id}\t{e.business}\t{e.url}\t{','.join(e.events)}\t{state}")
    return 0


async def _webhook_disable(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    await webhooks.disable_endpoint(conn, args.endpoint_id, None)
    print(f"disabled endpoint {args.endpoint_id}")
    return 0


async def _webhook_rotate(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    made = await webhooks.rotate_secret(conn, settings, args.endpoint_id, None)
    return _secret_shown(made.endpoint_id, made.secret, f"endpoint {made.endpoint_id} (deliveries carry the "
                         "previous secret's signature too for 24 hours)")


async def _webhook_deliveries(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    listed = await webhooks.deliveries(conn, await _business(conn, args.business), failed=args.failed,
                                       limit=args.limit)
    for delivery in listed:
        print(json.dumps(delivery, default=_plain) if args.json else _delivery_line(delivery))
    return 0


def _delivery_line(d: dict[str, Any]) -> str:
    attempts = " ".join(f"{a['attempt']}:{a['status_code'] or a['error']}/{a['latency_ms']}ms" for a in d["attempts"])
    return (f"{d['id']}\t{d['slug']}\t{d['webhook_type']}\t{d['event_id']}\t{d['state']}\t"
            f"next {d['next_attempt_at']:%Y-%m-%dT%H:%M:%S}Z\t{attempts}" if d["state"] == "pending" else
            f"{d['id']}\t{d['slug']}\t{d['webhook_type']}\t{d['event_id']}\t{d['state']}\t{attempts}")


def _plain(value: object) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else str(value)


async def _webhook_redeliver(conn: asyncpg.Connection, args: argparse.Namespace, settings: Settings) -> int:
    ids = await webhooks.redeliver(conn, await _business(conn, args.business), delivery_id=args.delivery_id,
                                   since=args.since)
    print(f"queued {len(ids)} delivery(ies) again" + (f": {', '.join(map(str, ids))}" if ids else ""))
    return 0


_PARTNERS = {"add": _partner_add, "rotate": _partner_rotate, "list": _partner_list, "remove": _partner_remove}
_WEBHOOKS = {"add": _webhook_add, "list": _webhook_list, "disable": _webhook_disable,
             "rotate-secret": _webhook_rotate, "deliveries": _webhook_deliveries, "redeliver": _webhook_redeliver}
