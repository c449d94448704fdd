"""verify's one pass over the log (events/integrity.py), reading the rows as PostgreSQL sends them in a
binary COPY: every stream's chain, the tree, and each seal's root as the scan reaches its size.

Why binary COPY: its rows are length-prefixed fields (a 4-byte big-endian length, -1 = FF FF FF FF
for NULL), which is the encoding of docs/INTEGRITY.md's canonical bytes, and text, bytea and
`jsonb::text` fields are sent as their bytes. So the stream's own slices are canonical fields as
they stand, and no field is decoded into a Python object and encoded back (in a profile, building
the bytes and the driver's decoding were two thirds of verify's CPU time). The integers, the UUID
and the timestamp arrive as binary values and are written out here as the definition says. Every
hash is computed here from the columns; nothing a database function computed is trusted.
Pure: bytes in, problems out.
"""

from __future__ import annotations

import binascii
import hashlib
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from events.chain import ENCODING_TAG, ZERO_HASH
from events.merkle import CompactRange
from events.seals import Seal

# The COPY's columns (integrity.sql: scan_events), fixed-size first so that one unpack reads them:
# field count, then (length, value) of hash, position, recorded_at, stream_version, schema_version,
# business_id, event_id. Six variable ones follow: stream_id, event_type, then idempotency_key,
# request_fingerprint, payload::text, metadata::text, which are canonical fields 7-10 back to back.
_HEAD = struct.Struct(">hi32siqiqiiihiqi16s")
_LAYOUT = (13, 32, 8, 8, 4, 2, 8, 16)  # the field count and the fixed lengths: no NULL, no odd size
_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_TRAILER = b"\xff\xff"
_LENGTH = struct.Struct(">i")
_UNIX_AT_2000 = 946_684_800_000_000  # COPY's timestamptz counts microseconds from 2000-01-01
_TAG_AND_UUID_LENGTH = ENCODING_TAG + struct.pack(">I", 36)  # a hyphenated UUID is 36 bytes


@dataclass(frozen=True, slots=True)
class Problem:
    """The first thing found wrong: where (a position or a seal), what kind, and how we know."""

    where: str
    kind: str  # edited, missing, reordered, inserted, bad signature, differs from copy
    detail: str

    def line(self) -> str:
        return f"{self.where}: {self.kind}: {self.detail}"


def stream_key(stream_id: str) -> bytes:
    """A stream as the scan keys it: its canonical field (length and UTF-8)."""
    encoded = stream_id.encode()
    return _LENGTH.pack(len(encoded)) + encoded


class _Decimals(dict[int, bytes]):
    """An integer's canonical field (length and decimal digits), made once per value: versions,
    schema versions and businesses repeat on almost every row."""

    def __missing__(self, value: int) -> bytes:
        digits = b"%d" % value
        field = self[value] = _LENGTH.pack(len(digits)) + digits
        return field


class ChainScan:
    """Fed the COPY stream piece by piece; stops at the first problem (later pieces are ignored)."""

    def __init__(self, seals: Sequence[Seal], compact: CompactRange,
                 seeds: dict[bytes, tuple[int, bytes]] | None = None) -> None:
        self.compact, self.first = compact, compact.size
        self.pending = sorted((s for s in seals if s.tree_size > compact.size), key=lambda s: s.tree_size)
        # --from-seal: a stream whose earlier events are under the starting seal chains onto the stored
        # hash of the event before its first one here (the seal vouches for it), by stream_key.
        self.seeds = dict(seeds or {})
        self.heads: dict[bytes, tuple[int, bytes]] = {}
        self.problem: Problem | None = None
        self._carry, self._started, self._decimals = b"", False, _Decimals()

    @property
    def events(self) -> int:
        return self.compact.size - self.first

    def feed(self, data: bytes | bytearray) -> None:
        """The next piece of the stream: whole rows are checked, a partial one waits for the rest."""
        if self.problem is not None:
            return
        buf = self._carry + data if self._carry else bytes(data)  # bytes: its slices key the stream heads
        offset = 0
        if not self._started:
            if len(buf) < len(_SIGNATURE) + 8:
                self._carry = buf
                return
            if not buf.startswith(_SIGNATURE):
                raise ValueError("not a binary COPY stream")
            offset = len(_SIGNATURE) + 8 + _LENGTH.unpack_from(buf, len(_SIGNATURE) + 4)[0]  # flags, extension
            self._started = True
        self._carry = buf[self._rows(buf, offset):]

    def finish(self) -> Problem | None:
        """After the last piece: the first problem, or a seal the log did not reach."""
        if self.problem is None and self._carry != _TRAILER:
            raise ValueError("the COPY stream ended inside a row")
        return self.problem or self._unreached()

    # The per-event loop is kept in one frame with its names local: a function call per event costs
    # about as much as the checks themselves, and verify's throughput is this loop's.
    # long: the per-event loop, one frame
    def _rows(self, buf: bytes, o: int) -> int:
        head, length, sha, hexlify = _HEAD.unpack_from, _LENGTH.unpack_from, hashlib.sha256, binascii.hexlify
        heads, seeds, decimal, edge, size = self.heads, self.seeds, self._decimals, self.compact.edge, self.compact.size
        due, end = self._due(), len(buf)
        try:
            while end - o >= _HEAD.size:
                (count, lh, stored, lp, position, lt, micros, lv, version, ls, schema, lb, business, lu,
                 uid) = head(buf, o)
                if (count, lh, lp, lt, lv, ls, lb, lu) != _LAYOUT:
                    self.problem = _odd_row(buf, o)
                    return o
                n = length(buf, s := o + _HEAD.size)[0]  # each variable field's end (NULL: its 4 bytes)
                n = length(buf, a := s + 4 + (n if n > 0 else 0))[0]  # a: after stream_id
                n = length(buf, b := a + 4 + (n if n > 0 else 0))[0]  # b: after event_type
                n = length(buf, f := b + 4 + (n if n > 0 else 0))[0]
                n = length(buf, f := f + 4 + (n if n > 0 else 0))[0]
                n = length(buf, f := f + 4 + (n if n > 0 else 0))[0]
                f += 4 + (n if n > 0 else 0)  # f: after metadata
                if f > end:
                    break
                stream = buf[s:a]
                last = heads.get(stream) or seeds.pop(stream, None)
                if version != (expected := last[0] + 1 if last else 1):
                    self.problem = _out_of_order(position, stream, version, expected)
                    return o
                # hexlify(uid, b"-", 2) is 4-4-4-4-4-4-4-4 hex digits: dropping three dashes makes 8-4-4-4-12
                x, t = hexlify(uid, b"-", 2), b"%d" % (micros + _UNIX_AT_2000)
                h = sha(b"".join((last[1] if last else ZERO_HASH, _TAG_AND_UUID_LENGTH, x[:4], x[5:29], x[30:34],
                                  x[35:], stream, decimal[version], buf[a:b], decimal[schema], decimal[business],
                                  buf[b:f], _LENGTH.pack(len(t)), t))).digest()
                if h != stored:
                    self.problem = _edited(position, stream, version)
                    return o
                heads[stream], node, k, o = (version, h), sha(b"\x00" + h).digest(), size, f
                while k & 1:  # the leaf joins the tree's right edge (events/merkle.py: CompactRange.append)
                    node, k = sha(b"\x01" + edge.pop() + node).digest(), k >> 1
                edge.append(node)
                size += 1
                if size == due:
                    self.compact.size = size
                    self.problem = self._reached_seal(position)
                    if self.problem is not None:
                        return o
                    due = self._due()
        except struct.error:  # a row cut at the piece's end: it waits for the rest
            pass
        finally:
            self.compact.size = size
        return o

    def _due(self) -> int:
        return self.pending[0].tree_size if self.pending else -1

    def _reached_seal(self, position: int) -> Problem | None:
        seal = self.pending.pop(0)
        if self.compact.root() != seal.root_hash:
            return Problem(f"seal {seal.seal_no}", "edited",
                           f"the log's first {seal.tree_size} events (up to position {position}) do not hash to its "
                           "root: an event among them was edited, inserted, deleted or reordered")
        return None

    def _unreached(self) -> Problem | None:
        if not self.pending:
            return None
        seal = self.pending[0]
        return Problem(f"seal {seal.seal_no}", "missing",
                       f"it covers {seal.tree_size} events but the log has {self.compact.size}: events were deleted")


def _name(stream: bytes) -> str:
    return stream[4:].decode(errors="replace")


def _out_of_order(position: int, stream: bytes, version: int, expected: int) -> Problem:
    where = f"position {position}"
    if version < expected:
        return Problem(where, "reordered", f"stream {_name(stream)} version {version} comes after version "
                                           f"{expected - 1}")
    return Problem(where, "missing", f"stream {_name(stream)} version {version} follows version {expected - 1}: "
                                     "the events between are not in the log")


def _edited(position: int, stream: bytes, version: int) -> Problem:
    return Problem(f"position {position}", "edited", f"stream {_name(stream)} version {version}: its contents or "
                                                     "its chain do not match its stored hash")


def _odd_row(buf: bytes, o: int) -> Problem:
    """A row whose fixed-size columns are not all there at their sizes (a NULL forced into one, a hash
    of another length): only someone editing rows past the constraints makes one."""
    lp = _LENGTH.unpack_from(buf, o + 2 + 4 + 32)[0] if _LENGTH.unpack_from(buf, o + 2)[0] == 32 else -1
    where = f"position {struct.unpack_from('>q', buf, o + 2 + 36 + 4)[0]}" if lp == 8 else "a row"
    return Problem(where, "edited", "a column the chain covers is NULL or its stored hash is not 32 bytes")
