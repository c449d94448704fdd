"""Random ids for the request path: version-4 UUIDs and request ids, from the OS's CSPRNG.

`uuid.uuid4()` is `UUID(bytes=os.urandom(16), version=4)`: most of its cost is UUID.__init__
checking and reshaping arguments we know are right (3-4 % of a submission's CPU in the
bench's profile, three ids per request). These draw the same 16 random bytes per id, so the
ids stay as unpredictable and as unique as uuid4's.
"""

from __future__ import annotations

import os
import uuid

# Version 4 (random) in the version nibble, RFC 4122 in the variant bits: what uuid4() sets.
_CLEAR = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_SET = (0x4000 << 64) | (0x8000 << 48)
_new = object.__new__
_set = object.__setattr__
_UNKNOWN = uuid.SafeUUID.unknown


def random_uuid() -> uuid.UUID:
    """A version-4 UUID, equal in every respect to one uuid.uuid4() could return."""
    value = _new(uuid.UUID)
    # UUID is immutable through __setattr__; uuid's own constructors set its two slots this way.
    _set(value, "int", (int.from_bytes(os.urandom(16)) & _CLEAR) | _SET)
    _set(value, "is_safe", _UNKNOWN)
    return value


def request_id() -> bytes:
    """A fresh X-Request-ID: 32 hex digits, as uuid4().hex was, without building a UUID."""
    return os.urandom(16).hex().encode()
