"""Personal data at rest: envelope encryption per patient, so a patient can be erased by
destroying one key (crypto-shredding) while the log itself is never rewritten. Pure: no I/O.

Each patient of a business has a data key (AES-256-GCM). It is stored only wrapped by a
key-encryption key (KEK) that comes from configuration and never enters the database
(`patient_keys`, migration 0010). An event's personal fields (PERSONAL_FIELDS) leave its
payload and travel, encrypted with the patient's data key, in an envelope:

    {"type": "consult.submitted.v2", "submission_id": …, "patient_id": …, …,
     "sealed": {"key_id": "<uuid>", "ciphertext": "<base64: 12-byte nonce ‖ AES-GCM output>"}}

The associated data is the event id and the key id, so a ciphertext moved to another event
(or re-labelled with another key) fails its tag check instead of reading as someone else's
data. Identifiers, types, times, consent and decisions stay in clear: the log stays
queryable and its invariants (one open submission per slot) keep working without keys.

Once the key is destroyed, the envelope reads as ERASED in every personal field, for
every reader at once: readers get the wrapped key from the row's join with `patient_keys`,
never from a cache of key ids, so no process can keep decrypting after `forget` commits.
(The JSONL replay reads the keys apart, in its own snapshot of the log: events/jsonl.py.)
"""

from __future__ import annotations

import collections
import hashlib
import os
import uuid
from binascii import unhexlify
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.codec import check_writable, decode_payload, encode_payload, split_tag, tag_of
from events.ids import time_uuid
from events.types import ERASED, Event

# Per event type (all its versions): the fields that are the patient's personal data.
PERSONAL_FIELDS: Mapping[str, tuple[str, ...]] = {
    "consult.submitted": ("patient", "chief_complaint", "medical_history", "answers"),
}
KEY_BYTES = 32  # AES-256
_NONCE_BYTES = 12  # AES-GCM's standard nonce; random, and a key encrypts far fewer than 2**32 messages
_ID_RANDOM = 10  # random bytes of a data key's (version-7) id
_JSON = msgspec.json.Encoder()
_MEMBERS = msgspec.json.Decoder(dict[str, msgspec.Raw])  # an object's members, each left as its JSON text
_ERASED_JSON = msgspec.Raw(msgspec.json.encode(ERASED))
_AAD = b"intake personal data v1\x00"  # then the event id's and the key id's 16 bytes each


class KeyEncryptionKeyError(Exception):
    """The key-encryption key configuration cannot be used."""


class Undecryptable(Exception):
    """An event's personal data does not decrypt: its ciphertext was moved from another event,
    altered, or its data key was changed; the log or `patient_keys` has been tampered with."""


class Envelope(msgspec.Struct, frozen=True):
    """The encrypted personal fields of one event, as the payload stores them."""

    key_id: uuid.UUID
    ciphertext: bytes


_ENVELOPE = msgspec.json.Decoder(Envelope)
_MALFORMED = "its envelope is malformed (not an envelope, or its ciphertext not base64); "
_BASE64 = msgspec.json.Decoder(bytes)
# What event_rows (migration 0016) gives as the key id of an envelope whose key id is not a uuid:
# a key no row of `patient_keys` has (data keys have version-7 ids).
TAMPERED_KEY_ID = uuid.UUID(int=0)


class KeyEncryptionKeys:
    """The configured KEKs: the first wraps new data keys; every one can unwrap (rotation)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise KeyEncryptionKeyError("no key-encryption key is configured")
        if any(len(key) != KEY_BYTES for key in keys):
            raise KeyEncryptionKeyError(f"a key-encryption key must be {KEY_BYTES} bytes (base64 of 32 random bytes)")
        self._by_id = {kek_id(key): AESGCM(key) for key in keys}
        self.current_id = kek_id(keys[0])

    @property
    def ids(self) -> frozenset[str]:
        return frozenset(self._by_id)

    def wrap(self, key_id: uuid.UUID, data_key: bytes, *, nonce: bytes | None = None) -> tuple[bytes, str]:
        """A data key wrapped by the current KEK (bound to its key id), and that KEK's id; `nonce`:
        12 fresh random bytes the caller drew (else drawn here)."""
        nonce = os.urandom(_NONCE_BYTES) if nonce is None else nonce
        return nonce + self._by_id[self.current_id].encrypt(nonce, data_key, key_id.bytes), self.current_id

    def unwrap(self, key_id: uuid.UUID, wrapped: bytes, wrapped_by: str) -> bytes:
        """The data key; Undecryptable if it was not wrapped for this key id by that KEK."""
        kek = self._by_id.get(wrapped_by)
        if kek is None:
            raise KeyEncryptionKeyError(f"data key {key_id} is wrapped by key-encryption key {wrapped_by}, "
                                        "which is not configured")
        try:
            return kek.decrypt(wrapped[:_NONCE_BYTES], wrapped[_NONCE_BYTES:], key_id.bytes)
        except InvalidTag:
            raise Undecryptable(f"data key {key_id} does not unwrap: {Undecryptable.__doc__}") from None


def kek_id(key: bytes) -> str:
    """A KEK's public name: a hash prefix that identifies it without revealing it."""
    return hashlib.sha256(b"intake key-encryption key\x00" + key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class DataKey:
    """One patient's data key, with the wrapped form `patient_keys` stores."""

    key_id: uuid.UUID
    business_id: int
    patient_id: uuid.UUID
    wrapped: bytes
    kek_id: str
    aead: AESGCM


class Keyring:
    """Seals and opens personal fields; caches unwrapped data keys, bounded (least recently used).

    The read cache is keyed by (key id, wrapped bytes) as the row's join returned them, so it
    only ever saves the unwrap: a destroyed key comes back from the join as NULL and reads as
    erased whatever the cache holds. The write cache maps a patient to the key new events use;
    the append statement checks that key is still live (events/store.py), so it is never stale.
    """

    def __init__(self, keks: KeyEncryptionKeys, *, sealing: bool = True, cache_size: int = 4096) -> None:
        self.keks = keks
        self.sealing = sealing  # False only to measure what encryption costs (bench/)
        self._cache_size = cache_size
        self._read: collections.OrderedDict[tuple[uuid.UUID, bytes], AESGCM] = collections.OrderedDict()
        self._write: collections.OrderedDict[tuple[int, uuid.UUID], DataKey] = collections.OrderedDict()

    def new_key(self, business_id: int, patient_id: uuid.UUID) -> DataKey:
        """A fresh data key for a patient (stored by the append that first uses it). Its id is
        time-ordered, so `patient_keys`' primary key is appended to at its right edge; the key
        and the wrapping nonce are random. One draw of random bytes serves all three."""
        drawn = os.urandom(_ID_RANDOM + KEY_BYTES + _NONCE_BYTES)
        key_id, raw = time_uuid(drawn[:_ID_RANDOM]), drawn[_ID_RANDOM:_ID_RANDOM + KEY_BYTES]
        wrapped, wrapped_by = self.keks.wrap(key_id, raw, nonce=drawn[_ID_RANDOM + KEY_BYTES:])
        return DataKey(key_id, business_id, patient_id, wrapped, wrapped_by, AESGCM(raw))

    def write_key(self, business_id: int, patient_id: uuid.UUID) -> DataKey:
        """The key this process encrypts a patient's new events with: the last one it used or
        learnt, else a new one."""
        slot = (business_id, patient_id)
        key = self._write.get(slot) or self.new_key(business_id, patient_id)
        self._remember(self._write, slot, key)
        return key

    def use_for_writing(self, key: DataKey | None, business_id: int, patient_id: uuid.UUID) -> None:
        """Replace the write key of a patient: the live one the database has, or none (a new one next)."""
        self._write.pop((business_id, patient_id), None)
        if key is not None:
            self._remember(self._write, (business_id, patient_id), key)

    def data_key(self, key_id: uuid.UUID, wrapped: bytes, wrapped_by: str) -> AESGCM:
        """The unwrapped data key of a `patient_keys` row, cached."""
        slot = (key_id, wrapped)
        aead = self._read.get(slot) or self.unwrap(key_id, wrapped, wrapped_by)
        self._remember(self._read, slot, aead)
        return aead

    def unwrap(self, key_id: uuid.UUID, wrapped: bytes, wrapped_by: str) -> AESGCM:
        """The unwrapped data key of a `patient_keys` row, not cached here: for a reader that keeps
        its own bounded cache (the JSONL replay), so that it does not hold every key twice."""
        return AESGCM(self.keks.unwrap(key_id, wrapped, wrapped_by))

    def seal(self, event: Event, event_id: uuid.UUID, key: DataKey) -> bytes:
        """The payload column of a new event, its personal fields encrypted with the patient's key."""
        fields = personal_fields(tag_of(type(event)))
        if not fields:
            return encode_payload(event)
        check_writable(event)
        # Its fields as they are (Structs, UUIDs, times), encoded once each: half the cost of
        # converting everything to JSON-ready values first.
        clear = msgspec.structs.asdict(event)
        clear["type"] = tag_of(type(event))
        return _JSON.encode(seal_fields(clear, fields, event_id, key))

    def open(self, event_type: str, schema_version: int, payload: str | bytes, event_id: uuid.UUID,
             key: AESGCM | None) -> Event:
        """The typed event of a sealed payload; `key` None (destroyed): personal fields read ERASED."""
        return decode_payload(event_type, schema_version, open_json(event_type, payload, event_id, key))

    def _remember(self, cache: collections.OrderedDict, slot: object, value: object) -> None:  # type: ignore[type-arg]
        cache[slot] = value
        cache.move_to_end(slot)
        if len(cache) > self._cache_size:
            cache.popitem(last=False)


def open_json(event_type: str, payload: str | bytes, event_id: uuid.UUID, key: AESGCM | None) -> bytes:
    """A sealed payload as it was before sealing (its recorded version), as JSON; `key` None (destroyed,
    or not needed): personal fields read ERASED. Members are moved as raw JSON text, never parsed
    further: replay writes this as it is."""
    clear = _MEMBERS.decode(payload)
    try:
        envelope = _ENVELOPE.decode(clear.pop("sealed"))
    except (KeyError, msgspec.ValidationError, msgspec.DecodeError):  # no envelope, or not one (not base64 …)
        raise _does_not_decrypt(event_id, _MALFORMED) from None
    return _open(event_type, clear, envelope.ciphertext, _aad(event_id, envelope.key_id), key)


def open_parts(fields: Sequence[str], clear: bytes, ciphertext: bytes, event_id: bytes, key_id: bytes,
               key: AESGCM | None) -> bytes:
    """open_json of a payload already taken apart (as PostgreSQL can): its members but `sealed` as a
    JSON object, the envelope's ciphertext as its JSON text (a base64 string), and the event's and the
    key's ids as their text; `fields`: the personal fields of the event's type."""
    try:
        sealed = _BASE64.decode(ciphertext)
    except (msgspec.ValidationError, msgspec.DecodeError):
        raise _does_not_decrypt(event_id.decode(), _MALFORMED) from None
    aad = _AAD + unhexlify(event_id.replace(b"-", b"")) + unhexlify(key_id.replace(b"-", b""))
    return _opened(_MEMBERS.decode(clear), sealed[:_NONCE_BYTES], sealed[_NONCE_BYTES:], aad, key, fields)


def _does_not_decrypt(event_id: object, why: str = "") -> Undecryptable:
    return Undecryptable(f"the personal data of event {event_id} does not decrypt: {why}{Undecryptable.__doc__}")


def unknown_key(event_id: object, key_id: object) -> Undecryptable:
    """The error of an envelope that names a data key `patient_keys` never had, or whose key id is
    not one (event_rows gives it as TAMPERED_KEY_ID)."""
    try:
        tampered = uuid.UUID(str(key_id)) == TAMPERED_KEY_ID
    except ValueError:  # as the JSONL replay reads it: the payload's own text
        tampered = True
    if tampered:
        return _does_not_decrypt(event_id, "its envelope's key id is not a key id; ")
    return Undecryptable(f"event {event_id} names data key {key_id}, which does not exist")


def _open(event_type: str, clear: dict[str, msgspec.Raw], ciphertext: bytes, aad: bytes, key: AESGCM | None) -> bytes:
    return _opened(clear, ciphertext[:_NONCE_BYTES], ciphertext[_NONCE_BYTES:], aad, key,
                   PERSONAL_FIELDS.get(event_type, ()))


def _opened(clear: dict[str, msgspec.Raw], nonce: bytes, ciphertext: bytes, aad: bytes, key: AESGCM | None,
            fields: Sequence[str]) -> bytes:
    if key is None:
        clear.update(dict.fromkeys(fields, _ERASED_JSON))
        return _JSON.encode(clear)
    try:
        personal = key.decrypt(nonce, ciphertext, aad)
    except (InvalidTag, ValueError):  # ValueError: a nonce of the wrong length
        event_id = uuid.UUID(bytes=aad[len(_AAD):len(_AAD) + 16])
        raise _does_not_decrypt(event_id) from None
    if clear and len(personal) > 2 and clear.keys().isdisjoint(fields):
        # The members seal_fields encrypted, as _JSON encoded them (compact, each key once), go
        # after the clear ones: the same bytes as decoding them into `clear` and encoding it all.
        return _JSON.encode(clear)[:-1] + b"," + personal[1:]
    clear.update(_MEMBERS.decode(personal))
    return _JSON.encode(clear)


def personal_fields(tag: str) -> tuple[str, ...]:
    """The personal fields of events with this tag (`consult.submitted.v2` → patient, …)."""
    return PERSONAL_FIELDS.get(split_tag(tag)[0], ())


def seal_fields(clear: dict[str, Any], fields: Sequence[str], event_id: uuid.UUID, key: DataKey) -> dict[str, Any]:
    """`clear`, a decoded payload, with `fields` moved into an encrypted envelope, in place (also used
    to encrypt events written before encryption, whose payload may be an earlier version)."""
    personal = {name: clear.pop(name) for name in fields if name in clear}
    nonce = os.urandom(_NONCE_BYTES)
    ciphertext = nonce + key.aead.encrypt(nonce, _JSON.encode(personal), _aad(event_id, key.key_id))
    clear["sealed"] = Envelope(key.key_id, ciphertext)
    return clear


def _aad(event_id: uuid.UUID, key_id: uuid.UUID) -> bytes:
    """What a ciphertext is bound to: the event and the key (associated data, not encrypted)."""
    return _AAD + event_id.bytes + key_id.bytes
