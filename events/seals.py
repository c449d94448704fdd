"""Seals: signed tree heads over the log (docs/INTEGRITY.md). The message a seal signs, its hash
(what the next seal names as its previous), Ed25519 keys, and the JSON line a seal is exported as.
Pure: cryptography and msgspec only, so an auditor's check needs no database.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
from dataclasses import dataclass

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from events.chain import ZERO_HASH, micros

MESSAGE_TAG = "intake-seal-v1"


class BadKey(ValueError):
    """A seal key is not a base64 Ed25519 key (32 raw bytes)."""


@dataclass(frozen=True, slots=True)
class Seal:
    """One signed tree head. `prev_seal` is the previous seal's hash (32 zero bytes for seal 1)."""

    seal_no: int
    tree_size: int
    root_hash: bytes
    prev_seal: bytes
    sealed_at: dt.datetime
    key_id: str
    signature: bytes

    def message(self) -> bytes:
        """The exact bytes signed: ASCII lines, hashes in lowercase hex, the time in microseconds."""
        return message(self.seal_no, self.tree_size, self.root_hash, self.prev_seal, self.sealed_at)

    def seal_hash(self) -> bytes:
        """SHA-256 of the message: what the next seal chains to."""
        return hashlib.sha256(self.message()).digest()


def message(seal_no: int, tree_size: int, root_hash: bytes, prev_seal: bytes, sealed_at: dt.datetime) -> bytes:
    """The signed message of a seal."""
    return (f"{MESSAGE_TAG}\nseal {seal_no}\ntree_size {tree_size}\nroot {root_hash.hex()}\n"
            f"previous {prev_seal.hex()}\nsealed_at {micros(sealed_at)}\n").encode()


def private_key(text: str) -> Ed25519PrivateKey:
    """A private key from its 32-byte seed in base64 (what `intake dev` writes)."""
    return Ed25519PrivateKey.from_private_bytes(_raw32(text))


def public_key(text: str) -> Ed25519PublicKey:
    """A public key from its 32 raw bytes in base64 (what GET /v1/seals/public-key serves)."""
    return Ed25519PublicKey.from_public_bytes(_raw32(text))


def _raw32(text: str) -> bytes:
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise BadKey(BadKey.__doc__) from None
    if len(raw) != 32:
        raise BadKey(BadKey.__doc__)
    return raw


def public_text(key: Ed25519PublicKey) -> str:
    """A public key as base64 of its 32 raw bytes."""
    return base64.b64encode(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).decode()


def key_id(key: Ed25519PublicKey) -> str:
    """A short name for a public key: the first 8 bytes of its SHA-256, in hex."""
    return hashlib.sha256(key.public_bytes(Encoding.Raw, PublicFormat.Raw)).hexdigest()[:16]


def new_private_text() -> str:
    """A fresh private key, as base64 of its seed (for `intake dev`)."""
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat
    seed = Ed25519PrivateKey.generate().private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return base64.b64encode(seed).decode()


def sign(key: Ed25519PrivateKey, seal_no: int, tree_size: int, root_hash: bytes, prev_seal: bytes,
         sealed_at: dt.datetime) -> Seal:
    """A new seal, signed."""
    signature = key.sign(message(seal_no, tree_size, root_hash, prev_seal, sealed_at))
    return Seal(seal_no, tree_size, root_hash, prev_seal, sealed_at, key_id(key.public_key()), signature)


def signed_by(seal: Seal, key: Ed25519PublicKey) -> bool:
    """True when the seal's signature is the key's over its message."""
    try:
        key.verify(seal.signature, seal.message())
    except InvalidSignature:
        return False
    return True


class SealLine(msgspec.Struct, frozen=True):
    """A seal as exported (`intake events seals --export`) and served (GET /v1/seals/latest)."""

    seal: int
    tree_size: int
    root_hash: str
    previous: str
    sealed_at: dt.datetime
    key_id: str
    signature: str
    seal_hash: str


def to_line(seal: Seal) -> SealLine:
    """Hashes in hex, the signature in base64."""
    return SealLine(seal.seal_no, seal.tree_size, seal.root_hash.hex(), seal.prev_seal.hex(), seal.sealed_at,
                    seal.key_id, base64.b64encode(seal.signature).decode(), seal.seal_hash().hex())


def from_line(line: SealLine) -> Seal:
    """The seal a line describes (its seal_hash is recomputed, never trusted)."""
    return Seal(line.seal, line.tree_size, bytes.fromhex(line.root_hash), bytes.fromhex(line.previous),
                line.sealed_at, line.key_id, base64.b64decode(line.signature))


FIRST_PREVIOUS = ZERO_HASH
