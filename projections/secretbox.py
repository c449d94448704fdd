"""Signing secrets at rest: encrypted, not hashed.

An API key can be stored as a hash because we only ever compare what a client sends with it; a
webhook secret is an HMAC key that we must *use* (to verify a partner's signature, to sign our
deliveries), so we need the secret itself back. It is kept encrypted with AES-256-GCM under
SECRETS_KEY, a key that lives in the deployment's configuration, never in the database (there is no
default, not even for development: `intake dev` makes one in its state directory): a copy of
the database (a backup, a replica, a dump in a ticket) holds no usable secret. The row's id is the
associated data, so a ciphertext moved to another row does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

NONCE_BYTES = 12


class SecretsKeyError(Exception):
    """SECRETS_KEY (or SECRETS_KEY_FILE) must hold 32 random bytes, base64-encoded."""


class UndecryptableSecret(Exception):
    """A stored secret does not decrypt under SECRETS_KEY: the key changed, or the row was altered."""


class SecretBox:
    """Encrypts and decrypts signing secrets with the deployment's key."""

    def __init__(self, encoded_key: str | None) -> None:
        if not encoded_key:
            raise SecretsKeyError(SecretsKeyError.__doc__)
        try:
            key = base64.b64decode(encoded_key.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise SecretsKeyError(SecretsKeyError.__doc__) from None
        if len(key) != 32:
            raise SecretsKeyError(SecretsKeyError.__doc__)
        self._aead = AESGCM(key)

    @staticmethod
    def generate() -> str:
        """A new key, as SECRETS_KEY holds it."""
        return base64.b64encode(os.urandom(32)).decode()

    def seal(self, secret: str, row_id: str) -> bytes:
        """The stored form: a fresh nonce, then the ciphertext and its tag."""
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._aead.encrypt(nonce, secret.encode(), row_id.encode())

    def open(self, sealed: bytes, row_id: str) -> str:
        """The secret back from its stored form."""
        try:
            return self._aead.decrypt(sealed[:NONCE_BYTES], sealed[NONCE_BYTES:], row_id.encode()).decode()
        except InvalidTag:
            raise UndecryptableSecret(UndecryptableSecret.__doc__) from None
