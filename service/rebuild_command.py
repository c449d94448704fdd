"""`intake projections rebuild [NAME…]` and `intake projections verify [NAME…]`: the printing side of
projections/rebuild.py and projections/verify.py. Both connect as the schema's owner: a rebuild
creates and swaps tables, a verify creates temporary ones."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import os
import resource
import signal
import sys
import time
import urllib.parse
from collections.abc import Iterator

import asyncpg
import psutil

from projections.projector import PROJECTIONS
from projections.rebuild import rebuild as rebuild_projections
from projections.verify import verify as verify_projections
from service.commands import connect_as_owner
from service.keyring import load_keyring
from service.settings import Settings

PLAIN_EVERY_S = 5.0  # a progress line this often when stdout is not a terminal (CI logs)


REBUILD_NICENESS = 10  # a rebuild is background work: it may take longer, requests may not
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


async def rebuild(args: argparse.Namespace, settings: Settings) -> int:
    """Rebuild and swap in; SIGTERM is turned into a cancellation, so the shadow is cleaned up as on Ctrl-C."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    # The fold is this process's CPU; on a machine it shares with the API, the API's requests go first.
    os.nice(REBUILD_NICENESS)
    names = args.names or list(PROJECTIONS)
    try:
        with _progress_reporter() as report:
            dsn = settings.require_owner_database_url()
            done = await rebuild_projections(dsn, names, load_keyring(settings), progress=report,
                                             on_connect=functools.partial(_yield_cpu, local=_is_local(dsn)))
    except asyncio.CancelledError:
        print("intake: rebuild interrupted; the live tables are unchanged", file=sys.stderr)
        return 143
    rate = done.events / done.seconds if done.seconds else 0.0
    print(f"rebuilt {', '.join(done.projections)}: {done.events} events in {done.seconds:.1f} s "
          f"({rate:,.0f} events/s; {done.folded} folded), {done.tail_streams} streams caught up after the bulk read, "
          f"peak RSS {_peak_rss_mb():.0f} MB")
    return 0


async def _yield_cpu(conn: asyncpg.Connection, *, local: bool) -> None:
    """A rebuild's database backends get the command's own priority when the server runs on this
    machine (dev, small installs, the bench): on a shared CPU, the COPY and the log's scan are as
    much the rebuild's work as its fold. Best effort: another host or another OS user, nothing."""
    if not local:
        return
    with contextlib.suppress(OSError, psutil.Error):
        pid = conn.get_server_pid()
        if psutil.Process(pid).name().startswith("postgres"):
            os.setpriority(os.PRIO_PROCESS, pid, REBUILD_NICENESS)


def _is_local(dsn: str) -> bool:
    parts = urllib.parse.urlsplit(dsn)
    host = urllib.parse.parse_qs(parts.query).get("host", [parts.hostname or ""])[0]
    return host in _LOCAL_HOSTS or host.startswith("/")  # a Unix socket directory


async def verify(args: argparse.Namespace, settings: Settings) -> int:
    """Exit 0 when every projection equals a fold of what its checkpoints cover, else 1 and the first
    differing rows: keys and column names (ids, not patient data), never the values."""
    conn = await connect_as_owner(settings)
    try:
        verdicts = await verify_projections(conn, args.names or list(PROJECTIONS), load_keyring(settings))
    finally:
        await conn.close()
    for verdict in verdicts:
        if verdict.equal:
            print(f"{verdict.projection}: equal ({verdict.live_rows} rows)")
            continue
        print(f"{verdict.projection}: {verdict.differing} differing row(s) "
              f"(live {verdict.live_rows} rows, rebuilt {verdict.rebuilt_rows})")
        for difference in verdict.first:
            key = " ".join(f"{column}={value}" for column, value in difference.key.items())
            detail = f": {', '.join(difference.columns)}" if difference.columns else ""
            print(f"  {key}: {difference.problem}{detail}")
    return 0 if all(verdict.equal for verdict in verdicts) else 1


@contextlib.contextmanager
def _progress_reporter() -> Iterator[object]:
    """A rich bar on a terminal; a plain line every PLAIN_EVERY_S otherwise."""
    if sys.stdout.isatty():
        # Imported here: every other `intake` command would pay for rich at start-up.
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f} events"),
                       TextColumn("{task.fields[rate]:,.0f} events/s"), TimeRemainingColumn(),
                       console=Console(file=sys.stdout))
        task = bar.add_task("rebuild", total=None, rate=0.0)
        with bar:
            yield lambda phase, done, total: bar.update(task, description=phase, completed=done, total=total,
                                                         rate=bar.tasks[task].speed or 0.0)
        return
    started, last = time.monotonic(), [0.0]

    def plain(phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= PLAIN_EVERY_S:
            last[0] = now
            rate = done / (now - started) if now > started else 0.0
            eta = f"{(total - done) / rate:.0f} s" if rate else "?"
            print(f"{phase}: {done}/{total} events, {rate:,.0f} events/s, ETA {eta}", flush=True)
    yield plain


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kilobytes on Linux
