"""`intake patients forget | encrypt-existing` and `intake keys rotate-kek | generate-kek`."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import sys
import uuid

from events import keystore
from events.store import EventStore
from events.types import EventMetadata
from projections.projector import Projector
from service import admin
from service.commands import connect_as_owner
from service.db import create_pool
from service.erasure import PatientUnknown, forget_patient
from service.keyring import checked_keyring, generate_kek
from service.settings import Settings


async def forget(args: argparse.Namespace, settings: Settings) -> int:
    """Forget a business's patient; exit 0 when forgotten or already forgotten, 1 when unknown."""
    pool = await create_pool(settings, application_name="intake-forget", min_size=1)
    try:
        async with pool.acquire() as conn:
            keyring = await checked_keyring(settings, conn)
            business_id = await admin.business_id_of(conn, args.business)
        request_id = str(uuid.uuid4())
        meta = EventMetadata(request_id=request_id, actor=f"cli:{getpass.getuser()}", correlation_id=request_id)
        try:
            outcome = await forget_patient(EventStore(pool, keyring), Projector(pool, keyring), business_id=business_id,
                                           customer_id=args.customer, reason=args.reason, metadata=meta,
                                           at=dt.datetime.now(dt.UTC), event_id=uuid.uuid4())
        except PatientUnknown as error:
            print(f"intake: {args.business} has no patient with customer id {args.customer!r}: {error}",
                  file=sys.stderr)
            return 1
    finally:
        await pool.close()
    if outcome.already_forgotten:
        print(f"patient {outcome.patient_id} of {args.business} was already forgotten: nothing to do")
    else:
        print(f"forgot patient {outcome.patient_id} of {args.business}: destroyed {len(outcome.key_ids)} data "
              f"key(s); patient.forgotten at position {outcome.position}")
    return 0


async def rotate_kek(args: argparse.Namespace, settings: Settings) -> int:
    """Rewrap every live data key with the first configured KEK; events are not touched."""
    conn = await connect_as_owner(settings)
    try:
        keyring = await checked_keyring(settings, conn)
        rewrapped, retired = await keystore.rotate_kek(conn, keyring.keks)
    finally:
        await conn.close()
    print(f"rewrapped {rewrapped} data key(s) with key-encryption key {keyring.keks.current_id}"
          + (f"; no longer needed: {', '.join(retired)}" if retired else ""))
    return 0


def print_new_kek(args: argparse.Namespace, settings: Settings) -> int:
    """A fresh KEK on stdout, for INTAKE_KEK_FILE (put it first to make it current)."""
    print(generate_kek())
    return 0


async def encrypt_existing(args: argparse.Namespace, settings: Settings) -> int:
    """Seal the personal fields of events written before encryption (one-time, as the owner)."""
    conn = await connect_as_owner(settings)
    try:
        keyring = await checked_keyring(settings, conn)
        try:
            sealed = await keystore.encrypt_existing(
                conn, keyring, report=lambda n: print(f"sealed {n} event(s)…", file=sys.stderr, flush=True))
        except keystore.SealsExist as error:
            print(f"intake: refused: {error}", file=sys.stderr)
            return 1
        # The old row versions still hold plaintext until vacuumed.
        await conn.execute("VACUUM events")
    finally:
        await conn.close()
    print(f"sealed the personal fields of {sealed} event(s) written before encryption")
    return 0
