"""Standard Webhooks signatures (https://www.standardwebhooks.com): the partners' callbacks we
verify and the deliveries we sign use the same small, spec-tested code.

A secret is `whsec_` + base64 of its key bytes. The signed content is `id.timestamp.body`; a
signature is `v1,` + base64 of its HMAC-SHA256, and a header may carry several (space-separated),
so a sender can sign with an old and a new secret while a receiver rotates. We write this rather
than depend on the `standardwebhooks` package: it is twenty lines, tested against the
specification's published vector (tests/unit/test_signatures.py), and the package brings an
HTTP client generator's dependencies with it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Sequence

SECRET_PREFIX = "whsec_"
TOLERANCE_S = 5 * 60  # the specification's window: older or newer timestamps are replays or clock faults
SECRET_BYTES = 32


class SignatureRejected(Exception):
    """The webhook's signature does not match any of the partner's current secrets."""


class TimestampOutOfRange(Exception):
    """The webhook-timestamp is more than five minutes from our clock."""


class MalformedSignatureHeaders(Exception):
    """Send webhook-id, webhook-timestamp (seconds since the epoch) and webhook-signature headers."""


def new_secret() -> str:
    """A fresh signing secret, as shown once to whoever will hold it."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_key(secret: str) -> bytes:
    """The key bytes of a `whsec_…` secret (the prefix is optional, as the libraries accept)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("a webhook secret is whsec_ followed by base64") from None


def sign(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,` signature of a message."""
    content = b"%s.%d.%s" % (webhook_id.encode(), timestamp, body)
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


def signature_header(keys: Sequence[bytes], webhook_id: str, timestamp: int, body: bytes) -> str:
    """The webhook-signature header: one signature per key, space-separated."""
    return " ".join(sign(key, webhook_id, timestamp, body) for key in keys)


def verify(keys: Sequence[bytes], webhook_id: str | None, timestamp: str | None, signatures: str | None,
           body: bytes, *, now: int) -> int:
    """The message's timestamp if any of its signatures was made with any of `keys`; raises otherwise."""
    # The length first: int() of a 5,000-digit text raises (Python's 4,300-digit limit), a 500.
    if not webhook_id or not signatures or not timestamp or len(timestamp) > 12 \
            or not (timestamp.isascii() and timestamp.isdigit()):
        raise MalformedSignatureHeaders(MalformedSignatureHeaders.__doc__)
    sent_at = int(timestamp)
    if abs(now - sent_at) > TOLERANCE_S:
        raise TimestampOutOfRange(TimestampOutOfRange.__doc__)
    offered = [part.encode() for part in signatures.split(" ") if part.startswith("v1,")]
    for key in keys:
        expected = sign(key, webhook_id, sent_at, body).encode()
        # compare_digest for every pair: how long it takes says nothing about how close a guess was.
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return sent_at
    raise SignatureRejected(SignatureRejected.__doc__)
