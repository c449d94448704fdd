"""The key-encryption keys (KEKs) from configuration; a KMS can sit behind `load_keks` later.

INTAKE_KEK_FILE names a file with one base64 key per line (the first wraps new data keys, the
others still unwrap: rotation), or INTAKE_KEK holds the same keys comma-separated. A KEK
never enters the database; `make run` / `intake dev` generate one into the local state folder.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

import asyncpg
import structlog

from events import keystore
from events.privacy import KEY_BYTES, KeyEncryptionKeyError, KeyEncryptionKeys, Keyring
from service.settings import Settings, SettingsError

_log = structlog.get_logger("intake.keys")
_OUTAGE = (OSError, TimeoutError, asyncpg.PostgresConnectionError, asyncpg.CannotConnectNowError)
_HOW = "set INTAKE_KEK_FILE (or INTAKE_KEK) to a key made by `intake keys generate-kek`"


def load_keks(settings: Settings) -> KeyEncryptionKeys:
    """The configured KEKs, or a SettingsError saying what is missing or wrong (never the key)."""
    if settings.kek_file:
        try:
            text = Path(settings.kek_file).read_text()
        except OSError as error:
            raise SettingsError(f"INTAKE_KEK_FILE cannot be read ({error.strerror}): {settings.kek_file}") from None
        source, entries = "INTAKE_KEK_FILE", text.splitlines()
    elif settings.kek:
        source, entries = "INTAKE_KEK", settings.kek.split(",")
    else:
        raise SettingsError(f"no key-encryption key is configured: {_HOW}")
    keys = [_decode(source, n, entry.strip()) for n, entry in enumerate(entries, 1)
            if entry.strip() and not entry.lstrip().startswith("#")]
    try:
        return KeyEncryptionKeys(keys)
    except KeyEncryptionKeyError as error:
        raise SettingsError(f"{source}: {error}: {_HOW}") from None


def load_keyring(settings: Settings) -> Keyring:
    """The keyring personal data is sealed and opened with."""
    return Keyring(load_keks(settings), sealing=settings.encrypt_personal_data)


def generate_kek() -> str:
    """A new KEK, base64 (what INTAKE_KEK_FILE holds, one per line)."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()


def _decode(source: str, line: int, entry: str) -> bytes:
    try:
        key = base64.b64decode(entry, validate=True)
    except binascii.Error:
        raise SettingsError(f"{source}: key {line} is not base64: {_HOW}") from None
    if len(key) != KEY_BYTES:
        raise SettingsError(f"{source}: key {line} is {len(key)} bytes, not {KEY_BYTES}: {_HOW}")
    return key


async def checked_keyring(settings: Settings, conn: asyncpg.Connection) -> Keyring:
    """The keyring, once the database confirms it holds every KEK its data keys need: a process
    with a missing or wrong KEK stops here, before it writes anything."""
    keyring = load_keyring(settings)
    try:
        await keystore.check_keks(conn, keyring.keks)
    except KeyEncryptionKeyError as error:
        raise SettingsError(str(error)) from None
    return keyring


async def starting_keyring(settings: Settings, pool: asyncpg.Pool, *, timeout_s: float) -> Keyring:
    """The keyring of a long-running process (API, worker): checked against the database like
    `checked_keyring` when it answers. These processes start while the database is down, and
    then start unchecked: the first one to reach it with a KEK the database does not know cannot
    write keys with it (patient_keys.kek_id must be registered) and cannot read with it."""
    keyring = load_keyring(settings)
    try:
        async with pool.acquire(timeout=timeout_s) as conn:
            await keystore.check_keks(conn, keyring.keks)
    except KeyEncryptionKeyError as error:
        raise SettingsError(str(error)) from None
    except _OUTAGE:
        _log.warning("keys.unchecked", reason="database unavailable at start")
    return keyring


async def preflight(settings: Settings) -> None:
    """Before `intake serve` forks its workers: refuse a missing, malformed or wrong KEK with one
    clear line (each worker's start would otherwise fail on its own, less legibly)."""
    load_keks(settings)
    try:
        conn = await asyncpg.connect(settings.require_database_url(), timeout=settings.db_connect_timeout_ms / 1000)
    except _OUTAGE:
        return  # started unchecked, as starting_keyring explains
    try:
        await checked_keyring(settings, conn)
    finally:
        await conn.close()
