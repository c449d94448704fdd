"""`intake events seal | verify | prove | check-proof | seals`: the printing side of events/sealing.py,
events/integrity.py, events/proving.py and events/proofs.py (docs/INTEGRITY.md).

Exit codes: 0 done or intact; 1 a check failed (verify, check-proof) or an error.
`check-proof` needs no database and no settings: an auditor runs it with the public key alone."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import asyncpg
import msgspec

from events.integrity import Report
from events.integrity import verify as verify_log
from events.proofs import check, decode
from events.proving import consistency_proof, inclusion_proof
from events.sealing import all_seals
from events.sealing import seal as append_seal
from events.seals import BadKey, SealLine, from_line, public_key, to_line
from service.rebuild_command import _progress_reporter as progress_reporter
from service.seal_keys import require_signing_key, require_verifying_key
from service.settings import Settings

_lines = msgspec.json.Decoder(SealLine)


async def _connect(settings: Settings) -> asyncpg.Connection:
    return await asyncpg.connect(settings.require_database_url(), timeout=settings.db_connect_timeout_ms / 1000,
                                 server_settings={"application_name": "intake-integrity", "jit": "off"})


async def seal(args: argparse.Namespace, settings: Settings) -> int:
    """Append a seal over everything up to the horizon (nothing when the log did not grow)."""
    key = require_signing_key(settings)
    conn = await _connect(settings)
    try:
        made = await append_seal(conn, key)
    finally:
        await conn.close()
    if made is None:
        print("nothing new to seal")
    else:
        print(f"seal {made.seal_no}: {made.tree_size} events, root {made.root_hash.hex()}")
    return 0


async def verify(args: argparse.Namespace, settings: Settings) -> int:
    """Recompute chains and trees; exit 1 naming the first problem."""
    key = require_verifying_key(settings)
    copies = [from_line(_lines.decode(line)) for line in Path(args.against).read_bytes().splitlines()
              if line.strip()] if args.against else []
    conn = await _connect(settings)
    try:
        with progress_reporter() as report:
            result = await verify_log(conn, key, from_seal=args.from_seal, copies=copies,
                                      progress=lambda done, total: report("verify", done, total))
    finally:
        await conn.close()
    print(summary(result))
    for problem in result.problems:
        print(problem.line())
    return 1 if result.problems else 0


def summary(report: Report) -> str:
    """One line: what was checked, and whether it holds."""
    verdict = "BROKEN" if report.problems else "intact"
    return (f"{verdict}: {report.events} events, {report.streams} streams, {report.seals} seals; "
            f"{report.sealed} sealed, {report.unsealed} unsealed")


async def prove(args: argparse.Namespace, settings: Settings) -> int:
    """An inclusion proof (POSITION) or a consistency proof (--consistency OLD NEW), as JSON."""
    conn = await _connect(settings)
    try:
        if args.consistency:
            proof = await consistency_proof(conn, *args.consistency)
        else:
            proof = await inclusion_proof(conn, args.position)
    finally:
        await conn.close()
    sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(proof)) + b"\n")
    return 0


def check_proof(args: argparse.Namespace) -> int:
    """Check a proof offline with the public key (base64, or a file holding it)."""
    text = args.public_key
    if not _is_key(text) and Path(text).is_file():
        text = Path(text).read_text()
    problems = check(decode(Path(args.file).read_bytes()), public_key(text))
    for problem in problems:
        print(f"proof does not hold: {problem}")
    if not problems:
        print("proof holds")
    return 1 if problems else 0


def _is_key(text: str) -> bool:
    try:
        public_key(text)
    except BadKey:
        return False
    return True


async def seals(args: argparse.Namespace, settings: Settings) -> int:
    """Every seal as JSON lines (--export), for an auditor to keep elsewhere."""
    conn = await _connect(settings)
    try:
        stored = await all_seals(conn)
    finally:
        await conn.close()
    sys.stdout.buffer.write(b"".join(msgspec.json.encode(to_line(s.seal)) + b"\n" for s in stored))
    return 0
