"""`intake events replay`: the log, filtered, as a table for people or JSON lines for tools; with
`--as-of TIME`, the read models as they stood at TIME. Parsing is in service/cli.py; the reads are
events/replay.py and projections/as_of.py. Output is written as it is read (constant memory), and a
reader that goes away (`| head`) ends the command quietly."""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import functools
import io
import os
import sys
from typing import IO, Any

import asyncpg
import msgspec

from events.codec import KNOWN_TYPES
from events.jsonl import Connect, replay_jsonl
from events.privacy import Keyring
from events.replay import BIGINT_MAX, EventFilter, parse_time, replay
from events.sqlfiles import queries
from events.store import decode_record
from projections.as_of import Tables, tables_as_of
from service.collector import set_aside_startup
from service.keyring import load_keyring
from service.settings import Settings

_FILTERS_WITHOUT_AS_OF = ("stream", "types", "from_position", "to_position", "since", "until")
OUT_BUFFER = 256 * 1024  # bytes of output per write(2)


class RowLine(msgspec.Struct, frozen=True):
    """One read-model row of `--as-of … --format jsonl`."""

    table: str
    row: Any


def time_argument(text: str) -> dt.datetime:
    """argparse's `type=` for times: a usage error (exit 2) unless RFC 3339 with an offset."""
    try:
        return parse_time(text)
    except ValueError:
        raise argparse.ArgumentTypeError("expected an RFC 3339 time with offset, e.g. 2026-03-01T14:02:00Z") from None


def type_argument(text: str) -> str:
    """argparse's `type=` for `--type`: a known event type, with or without its version."""
    names = {name for name, _ in KNOWN_TYPES} | {f"{name}.v{version}" for name, version in KNOWN_TYPES}
    if text not in names:
        raise argparse.ArgumentTypeError(f"unknown event type; known: {', '.join(sorted(names))}")
    return text


def usage_error(args: argparse.Namespace) -> str | None:
    """What is wrong with a combination of options, for parser.error (exit 2)."""
    if args.from_position is not None and args.to_position is not None and args.from_position > args.to_position:
        return "--from-position is after --to-position"
    if args.since is not None and args.until is not None and args.since >= args.until:
        return "--since is not before --until"
    if args.as_of is not None and any(getattr(args, name) not in (None, []) for name in _FILTERS_WITHOUT_AS_OF):
        return "--as-of takes only --business and --consultation: a state folded from some events is no state"
    return None


async def run(args: argparse.Namespace, settings: Settings) -> int:
    """`intake events replay …`: 0 when all was written (or the reader left early)."""
    # A buffer of our own: with PYTHONUNBUFFERED (set in the Dockerfile, for logs) sys.stdout.buffer
    # is the raw file, and every event would cost a write(2): 44 % of a replay's time in a profile.
    out = io.BufferedWriter(io.FileIO(sys.stdout.fileno(), "wb", closefd=False), buffer_size=OUT_BUFFER)
    table = (args.format or ("table" if sys.stdout.isatty() else "jsonl")) == "table"
    connect = functools.partial(_connect, settings)
    conn = await connect()
    try:
        business_id = await _business_id(conn, args.business)
        keyring = load_keyring(settings)  # read-only: a KEK the data needs and lacks fails the read, clearly
        if args.as_of is not None:
            tables = await tables_as_of(conn, keyring, args.as_of, business_id=business_id,
                                        consultation_id=args.consultation)
            _write_tables(out, tables, table)
        else:
            await _write_events(out, conn, connect, keyring, _filter(args, business_id), table)
        out.flush()
    except BrokenPipeError:
        # The reader is gone (`| head`): what it wanted was written. Point stdout at /dev/null so
        # that the interpreter's last flush at exit has nowhere to fail.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        await conn.close()
    return 0


async def _connect(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(settings.require_database_url(), timeout=settings.db_connect_timeout_ms / 1000,
                                 server_settings={"application_name": "intake-replay", "jit": "off",
                                                  "statement_timeout": str(settings.db_statement_timeout_ms)})


async def _business_id(conn: asyncpg.Connection, slug: str | None) -> int | None:
    if slug is None:
        return None
    business_id = await conn.fetchval(queries("admin")["business_by_slug"], slug)
    if business_id is None:
        raise LookupError("no business with that slug")
    return business_id


def _filter(args: argparse.Namespace, business_id: int | None) -> EventFilter:
    return EventFilter(business_id=business_id, stream_id=args.stream, consultation_id=args.consultation,
                       types=tuple(args.types), from_position=args.from_position or 0,
                       to_position=BIGINT_MAX if args.to_position is None else args.to_position,
                       since=args.since, until=args.until)


_ENCODER = msgspec.json.Encoder()
_EVENT_HEADER = f"{'POSITION':>10}  {'RECORDED_AT':32}  {'TYPE':36}  {'VERSION':>7}  {'STREAM_ID':36}  CONSULTATION\n"


async def _write_events(out: IO[bytes], conn: asyncpg.Connection, connect: Connect, keyring: Keyring,
                        where: EventFilter, table: bool) -> None:
    if not table:
        _fewer_collections()
        await replay_jsonl(conn, connect, where, keyring, out.write)
        return
    out.write(_EVENT_HEADER.encode())
    read = functools.partial(_event_row, keyring=keyring)
    async with contextlib.aclosing(replay(conn, where, read=read)) as rows:
        async for row in rows:
            out.write(row)


def _fewer_collections() -> None:
    """The JSONL replay keeps a few small containers per row alive for two batches (two MiB of
    rows): at the default threshold (700) the collector walked them again and again, 6.5 % of a
    profile. Larger young generations, and start-up's objects set aside (frozen) so full collections
    stay short: 3 % fewer instructions per event (callgrind); still bounded, cycles still collected."""
    set_aside_startup(50_000, 20, 100)


def _event_row(record: asyncpg.Record, *, keyring: Keyring) -> bytes:
    event = decode_record(record, keyring)
    tag = f"{event.event_type}.v{event.schema_version}"
    consultation = getattr(event.data, "consultation_id", "")
    return (f"{event.position:>10}  {event.recorded_at.isoformat():32}  {tag:36}  {event.stream_version:>7}  "
            f"{event.stream_id:36}  {consultation}\n").encode()


def _write_tables(out: IO[bytes], tables: Tables, table: bool) -> None:
    for name, rows in tables.items():
        ordered = [row for _, row in sorted(rows.items(), key=lambda item: str(item[0]))]
        if table:
            out.write(f"{name} ({len(ordered)})\n".encode())
        for row in ordered:
            out.write(_table_row(row) if table else _ENCODER.encode(RowLine(name, row)) + b"\n")


def _table_row(row: msgspec.Struct) -> bytes:
    fields = msgspec.structs.asdict(row)
    return ("  " + "  ".join(f"{key}={'-' if value is None else value}" for key, value in fields.items()) + "\n").encode()
