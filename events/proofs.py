"""Proofs for outsiders (docs/INTEGRITY.md): an event's inclusion under a signed seal, and one seal's
tree being a prefix of another's, as JSON documents checked with nothing but the seal public key.
Pure: `intake events check-proof` runs without a database.
"""

from __future__ import annotations

import datetime as dt
import uuid

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from events.chain import StoredRow, event_hash
from events.merkle import leaf_hash, verify_consistency, verify_inclusion
from events.seals import SealLine, from_line, signed_by

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class ProvenEvent(msgspec.Struct, frozen=True):
    """Every column the event's hash covers, as stored (payload and metadata: jsonb's text output)."""

    position: int
    event_id: uuid.UUID
    stream_id: str
    stream_version: int
    event_type: str
    schema_version: int
    business_id: int
    idempotency_key: str | None
    request_fingerprint: str | None  # hex
    payload: str
    metadata: str
    recorded_at_us: int  # microseconds since the Unix epoch, what is hashed

    def stored_row(self) -> StoredRow:
        fingerprint = None if self.request_fingerprint is None else bytes.fromhex(self.request_fingerprint)
        return StoredRow(self.event_id, self.stream_id, self.stream_version, self.event_type, self.schema_version,
                         self.business_id, self.idempotency_key, fingerprint, self.payload, self.metadata,
                         _EPOCH + dt.timedelta(microseconds=self.recorded_at_us))


class InclusionProof(msgspec.Struct, frozen=True, tag="inclusion", tag_field="kind"):
    """The event, the hash of its stream's previous event, its leaf and audit path, and the seal."""

    event: ProvenEvent
    previous_hash: str
    event_hash: str
    leaf_index: int
    audit_path: list[str]
    seal: SealLine


class ConsistencyProof(msgspec.Struct, frozen=True, tag="consistency", tag_field="kind"):
    """Two seals and the path that shows the older tree is a prefix of the newer."""

    old: SealLine
    new: SealLine
    path: list[str]


Proof = InclusionProof | ConsistencyProof
_decoder = msgspec.json.Decoder(Proof)


class BadProof(ValueError):
    """The file is not an intake proof."""


def decode(document: bytes) -> Proof:
    """A proof document; BadProof if it is not one."""
    try:
        return _decoder.decode(document)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        raise BadProof(f"not an intake proof: {error}") from None


def check(proof: Proof, key: Ed25519PublicKey) -> list[str]:
    """What is wrong with a proof (empty: it holds)."""
    if isinstance(proof, ConsistencyProof):
        return _check_consistency(proof, key)
    problems = [] if signed_by(from_line(proof.seal), key) else ["the seal's signature does not verify"]
    computed = event_hash(bytes.fromhex(proof.previous_hash), proof.event.stored_row())
    if computed.hex() != proof.event_hash:
        problems.append("the event's contents do not hash to its event_hash (the event was changed)")
    if not verify_inclusion(proof.leaf_index, proof.seal.tree_size, leaf_hash(computed),
                            [bytes.fromhex(h) for h in proof.audit_path], bytes.fromhex(proof.seal.root_hash)):
        problems.append(f"the audit path does not lead from leaf {proof.leaf_index} to the seal's root")
    return problems


def _check_consistency(proof: ConsistencyProof, key: Ed25519PublicKey) -> list[str]:
    problems = [f"seal {line.seal}'s signature does not verify" for line in (proof.old, proof.new)
                if not signed_by(from_line(line), key)]
    if not verify_consistency(proof.old.tree_size, proof.new.tree_size, bytes.fromhex(proof.old.root_hash),
                              bytes.fromhex(proof.new.root_hash), [bytes.fromhex(h) for h in proof.path]):
        problems.append(f"seal {proof.old.seal}'s tree is not a prefix of seal {proof.new.seal}'s")
    return problems
