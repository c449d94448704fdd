"""Tamper-evidence benchmark on the generated log (docs/INTEGRITY.md): the first seal over the whole
log, `intake events verify` over it as a process (events/s), then 10,000 new events and the seal that
follows them, timed in-process (the work itself, not an interpreter's start-up): a seal extends the
stored right edge, so its cost is the new events plus log n, whatever the log's length.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg
import msgspec

from bench import real_service
from bench.child_usage import measure
from bench.generated_log import write_log
from bench.rebuild import Log
from events.sealing import seal
from events.seals import new_private_text, private_key

TIMEOUT_S = 900
NEW_EVENTS = 10_000
TARGET_VERIFY_PER_S, TARGET_SEAL_S = 100_000.0, 1.0
SECOND_BUSINESS = "bench-seal"


class SealRecord(msgspec.Struct, kw_only=True):
    events: int
    first_seal_s: float = 0.0
    verify_s: float = 0.0
    verify_events_per_s: float = 0.0
    verify_rss_mb: float = 0.0
    new_events: int = NEW_EVENTS
    next_seal_s: float = 0.0
    unavailable: str | None = None


async def _timed_seal(url: str, key: str) -> float:
    conn = await asyncpg.connect(url)
    try:
        started = time.monotonic()
        made = await seal(conn, private_key(key))
        elapsed = time.monotonic() - started
    finally:
        await conn.close()
    assert made is not None, "nothing was sealed"
    return elapsed


async def _more_events(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        business_id = await conn.fetchval("INSERT INTO businesses (slug, name) VALUES ($1, 'Seal bench') "
                                          "RETURNING id", SECOND_BUSINESS)
        await write_log(conn, business_id=business_id, events=NEW_EVENTS)
    finally:
        await conn.close()


def measure_sealing(log: Log, logs: Path) -> SealRecord:
    """Adds NEW_EVENTS events to the log: run it after the targets that count the log's events."""
    key = new_private_text()
    record = SealRecord(events=log.events)
    print("measuring the first seal ...", flush=True)
    record.first_seal_s = round(asyncio.run(_timed_seal(log.url, key)), 2)
    print("measuring verify ...", flush=True)
    usage = measure([*real_service.intake_argv(), "events", "verify"],
                    {**real_service.service_env(log.url), "INTAKE_SEAL_KEY": key}, logs / "verify.log",
                    timeout_s=TIMEOUT_S)
    record.verify_s, record.verify_rss_mb = round(usage.seconds, 2), usage.peak_rss_mb
    record.verify_events_per_s = round(log.events / usage.seconds, 0)
    asyncio.run(_more_events(log.url))
    record.next_seal_s = round(asyncio.run(_timed_seal(log.url, key)), 3)
    return record


def valid(record: SealRecord) -> bool:
    return record.unavailable is None and record.verify_s > 0


def text(record: SealRecord) -> str:
    if record.unavailable:
        return f"seal: unavailable: {record.unavailable}"
    fast = record.verify_events_per_s >= TARGET_VERIFY_PER_S
    quick = record.next_seal_s < TARGET_SEAL_S
    return "\n".join([
        f"first seal over {record.events:,} events: {record.first_seal_s:.2f} s; verify: {record.verify_s:.1f} s = "
        f"{record.verify_events_per_s:,.0f} events/s, peak RSS {record.verify_rss_mb:.0f} MB; "
        f"seal after {record.new_events:,} new events: {record.next_seal_s:.3f} s",
        f"targets: verify ≥ {TARGET_VERIFY_PER_S:,.0f} events/s {'met' if fast else 'MISSED'}; "
        f"seal < {TARGET_SEAL_S:.0f} s {'met' if quick else 'MISSED'}",
    ])


def markdown(record: SealRecord) -> str:
    return "\n".join(["#### Seal and verify", "", *(f"- {line}" for line in text(record).splitlines())])
