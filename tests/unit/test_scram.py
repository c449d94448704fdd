"""SASLprep as PostgreSQL applies it to a password before SCRAM: normalized when it can be, the raw
password when it holds a prohibited character (so our verifier matches what libpq will send)."""

from __future__ import annotations

import pytest

from service.scram import saslprep


def test_a_plain_password_is_its_own_preparation():
    assert saslprep("correct horse battery staple") == "correct horse battery staple"


def test_compatibility_characters_are_normalized():
    assert saslprep("\ufb01x") == "fix"  # the ﬁ ligature, NFKC


@pytest.mark.parametrize("prohibited", ["\x07", "\ue000", "\u0080"])  # control (C.2.1/C.2.2), private use (C.3)
def test_a_password_with_a_prohibited_character_is_used_as_it_is(prohibited):
    raw = "\ufb01" + prohibited
    assert saslprep(raw) == raw
