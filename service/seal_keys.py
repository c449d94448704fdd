"""The seal keys from Settings: the private key signs (the worker, `intake events seal`), the public
key checks (`verify`, the HTTP endpoints). Errors name the setting, never the key."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from events.seals import BadKey, private_key, public_key
from service.settings import Settings, SettingsError, inline_or_file

KEY_SETTINGS = "INTAKE_SEAL_KEY or INTAKE_SEAL_KEY_FILE"


def signing_key(settings: Settings) -> Ed25519PrivateKey | None:
    """The configured private key, or None when none is configured."""
    text = inline_or_file(settings.seal_key, settings.seal_key_file, file_setting="INTAKE_SEAL_KEY_FILE")
    if text is None:
        return None
    name = "INTAKE_SEAL_KEY" if settings.seal_key else "INTAKE_SEAL_KEY_FILE"
    try:
        return private_key(text)
    except BadKey:
        raise SettingsError(f"{name} is not a base64 Ed25519 key (32 bytes)") from None


def require_signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The private key, or a clear error."""
    key = signing_key(settings)
    if key is None:
        raise SettingsError(f"sealing needs a key: set {KEY_SETTINGS}")
    return key


def verifying_key(settings: Settings) -> Ed25519PublicKey | None:
    """INTAKE_SEAL_PUBLIC_KEY, else the private key's public half; None when neither is set."""
    if settings.seal_public_key:
        try:
            return public_key(settings.seal_public_key)
        except BadKey:
            raise SettingsError("INTAKE_SEAL_PUBLIC_KEY is not a base64 Ed25519 public key (32 bytes)") from None
    key = signing_key(settings)
    return key.public_key() if key else None


def require_verifying_key(settings: Settings) -> Ed25519PublicKey:
    """The public key, or a clear error."""
    key = verifying_key(settings)
    if key is None:
        raise SettingsError(f"checking seals needs a key: set INTAKE_SEAL_PUBLIC_KEY or {KEY_SETTINGS}")
    return key
