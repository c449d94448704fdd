"""The RFC 9162 tree, its compact range and its proofs, against a recursive implementation written
here from the RFC's definitions (section 2.1), not by calling the code under test."""

from __future__ import annotations

import hashlib

import pytest

from events.merkle import (
    CompactRange,
    consistency_path,
    inclusion_path,
    leaf_hash,
    tree_root,
    verify_consistency,
    verify_inclusion,
)


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 2.1.1, over event hashes (the leaf hash applied here)."""
    if not leaves:
        return sha(b"")
    if len(leaves) == 1:
        return sha(b"\x00" + leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return sha(b"\x01" + mth(leaves[:k]) + mth(leaves[k:]))


EVENTS = [sha(str(i).encode()) for i in range(40)]
LEAVES = [leaf_hash(e) for e in EVENTS]


def test_a_three_leaf_root_is_the_rfc_s_split_at_two():
    a, b, c = (sha(x) for x in (b"a", b"b", b"c"))
    expected = sha(b"\x01" + sha(b"\x01" + sha(b"\x00" + a) + sha(b"\x00" + b)) + sha(b"\x00" + c))
    assert tree_root([leaf_hash(x) for x in (a, b, c)]) == expected


@pytest.mark.parametrize("size", range(0, 41))
def test_the_compact_range_gives_the_root_of_every_size(size):
    assert tree_root(LEAVES[:size]) == mth(EVENTS[:size])


def test_a_compact_range_extended_from_its_stored_edge_equals_one_built_at_once():
    first = CompactRange()
    first.extend(LEAVES[:13])
    resumed = CompactRange(first.size, first.edge)
    resumed.extend(LEAVES[13:])
    assert resumed.root() == mth(EVENTS)


def test_an_edge_of_the_wrong_length_is_refused():
    with pytest.raises(ValueError):
        CompactRange(3, [LEAVES[0]])


@pytest.mark.parametrize("size", [1, 2, 3, 5, 8, 13, 40])
def test_every_inclusion_proof_verifies_and_fails_for_another_leaf(size):
    root = mth(EVENTS[:size])
    for index in range(size):
        path = inclusion_path(LEAVES[:size], index)
        assert verify_inclusion(index, size, LEAVES[index], path, root)
        assert not verify_inclusion(index, size, leaf_hash(b"changed"), path, root)


@pytest.mark.parametrize("old,new", [(1, 1), (1, 2), (3, 7), (4, 8), (4, 40), (6, 8), (7, 40), (40, 40)])
def test_consistency_proofs_verify_and_fail_for_a_changed_old_tree(old, new):
    path = consistency_path(LEAVES[:new], old)
    assert verify_consistency(old, new, mth(EVENTS[:old]), mth(EVENTS[:new]), path)
    changed = mth([sha(b"x")] + EVENTS[1:old])
    assert not verify_consistency(old, new, changed, mth(EVENTS[:new]), path)
