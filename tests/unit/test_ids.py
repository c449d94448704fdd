"""The request path's own id generators: real version-4 and version-7 UUIDs and opaque request ids."""

from __future__ import annotations

import os
import re
import time
import uuid

from hypothesis import given
from hypothesis import strategies as st

from events.ids import name_uuid, random_uuid, request_id, time_uuid

DRAWS = 20_000


def test_random_uuids_are_version_4_rfc_4122_and_round_trip_like_uuid4s():
    for _ in range(1000):
        value = random_uuid()
        assert isinstance(value, uuid.UUID)
        assert value.version == 4 and value.variant == uuid.RFC_4122
        assert uuid.UUID(str(value)) == value and hash(uuid.UUID(bytes=value.bytes)) == hash(value)


def test_random_uuids_do_not_repeat_and_vary_in_every_random_bit():
    values = [random_uuid().int for _ in range(DRAWS)]
    assert len(set(values)) == DRAWS
    ones = zeros = 0
    for value in values:
        ones, zeros = ones | value, zeros | ~value
    fixed = (0xF000 << 64) | (0xC000 << 48)  # version and variant: the only bits that never change
    assert (ones & zeros) & ((1 << 128) - 1) == ~fixed & ((1 << 128) - 1)


def test_request_ids_are_32_hex_digits_and_do_not_repeat():
    ids = [request_id() for _ in range(DRAWS)]
    assert all(re.fullmatch(rb"[0-9a-f]{32}", value) for value in ids)
    assert len(set(ids)) == DRAWS



@given(st.uuids(), st.text(max_size=200))
def test_name_uuids_equal_uuid5_for_every_name_including_non_ascii(namespace, name):
    assert name_uuid(namespace, name) == uuid.uuid5(namespace, name)
    assert str(name_uuid(namespace, name)) == str(uuid.uuid5(namespace, name))


def test_time_uuids_are_version_7_carry_the_time_and_sort_by_it_and_do_not_repeat():
    before = time.time_ns() // 1_000_000
    values = [time_uuid(os.urandom(10)) for _ in range(DRAWS)]
    after = time.time_ns() // 1_000_000
    assert all(v.version == 7 and v.variant == uuid.RFC_4122 for v in values)
    assert all(before <= v.int >> 80 <= after for v in values)
    assert [v.int >> 80 for v in values] == sorted(v.int >> 80 for v in values)
    assert len(set(values)) == DRAWS and uuid.UUID(str(values[0])) == values[0]
