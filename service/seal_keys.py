"""The seal keys from Settings: the private key signs (the worker, `intake events seal`), the public
key checks (`verify`, the HTTP endpoints). Errors name the setting, never the key."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from events.seals import BadKey, private_key, public_key
from service.settings import Settings, SettingsError

KEY_SETTINGS = "INTAKE_SEAL_KEY or INTAKE_SEAL_KEY_FILE"


def signing_key(settings: Settings) -> Ed25519PrivateKey | None:
    """The configured private key, or None when none is configured."""
    if settings.seal_key:
        text, name = settings.seal_key, "INTAKE_SEAL_KEY"
    elif settings.seal_key_file:
        name = "INTAKE_SEAL_KEY_FILE"
        try:
            text = Path(settings.seal_key_file).read_text()
        except OSError as error:
            raise SettingsError(f"{name}: cannot read the key file ({error.strerror})") from None
    else:
        return None
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
