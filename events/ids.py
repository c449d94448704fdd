"""Ids for the request path: random version-4 UUIDs and request ids, name-based (version-5) UUIDs,
and time-ordered (version-7) UUIDs for keys that are only ever appended to an index.

`uuid.uuid4()` is `UUID(bytes=os.urandom(16), version=4)`: most of its cost is UUID.__init__
checking and reshaping arguments we know are right (3-4 % of a submission's CPU in the
bench's profile, three ids per request). These draw the same 16 random bytes per id, so the
ids stay as unpredictable and as unique as uuid4's.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid

# Version 4 (random) in the version nibble, RFC 4122 in the variant bits: what uuid4() sets.
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_SET = (0x4000 << 64) | (0x8000 << 48)
_SET_V5 = (0x5000 << 64) | (0x8000 << 48)
_SET_V7 = (0x7000 << 64) | (0x8000 << 48)
_RANDOM_V7 = (1 << 80) - 1  # below the 48-bit millisecond timestamp
_new = object.__new__
_set = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown


def random_uuid() -> uuid.UUID:
    """A version-4 UUID, equal in every respect to one uuid.uuid4() could return."""
    return _uuid((int.from_bytes(os.urandom(16)) & _CLEAR) | _SET)


def name_uuid(namespace: uuid.UUID, name: str) -> uuid.UUID:
    """uuid.uuid5(namespace, name), the same value, without UUID.__init__'s argument checks."""
    digest = hashlib.sha1(namespace.bytes + name.encode(), usedforsecurity=False).digest()[:16]
    return _uuid((int.from_bytes(digest) & _CLEAR) | _SET_V5)


def time_uuid(random: bytes) -> uuid.UUID:
    """A version-7 UUID (RFC 9562): the Unix time in milliseconds, then 74 bits of `random` (10
    random bytes or more). Ids made later sort later, so a B-tree on them is appended to at its
    right edge (one hot page, PostgreSQL's rightmost-leaf fast path) instead of at a random leaf."""
    value = (time.time_ns() // 1_000_000) << 80 | (int.from_bytes(random[:10]) & _RANDOM_V7)
    return _uuid((value & _CLEAR) | _SET_V7)


def _uuid(value: int) -> uuid.UUID:
    # UUID is immutable through __setattr__; uuid's own constructors set its two slots this way.
    made = _new(uuid.UUID)
    _set(made, "int", value)
    _set(made, "is_safe", _UNKNOWN)
    return made


def request_id() -> bytes:
    """A fresh X-Request-ID: 32 hex digits, as uuid4().hex was, without building a UUID."""
    return os.urandom(16).hex().encode()
