"""Target (d): the real intake service, prepared and started through its own CLI."""

from __future__ import annotations

import os
import subprocess
import sys

import msgspec

from bench.servers import REPO_ROOT, VENV_BIN
from events.privacy import Keyring
from projections.secretbox import SecretBox
from service.keyring import generate_kek, load_keyring
from service.settings import Settings

BUSINESS_SLUG = "bench"
SUBMISSIONS_PATH = f"/v1/businesses/{BUSINESS_SLUG}/consult-submissions"
CLI_TIMEOUT_S = 120


class ServiceUnavailable(RuntimeError):
    """The intake CLI could not prepare the service for a benchmark."""


class IssuedKey(msgspec.Struct):
    key: str


def intake_argv() -> list[str]:
    """The venv's `intake` script; before `pip install -e .` made it, its entry point directly."""
    script = VENV_BIN / "intake"
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-c", "import sys; from service.cli import main; sys.exit(main())"]


def prepare(database_url: str) -> str:
    """Migrate a fresh database, create the bench business and return a submissions key."""
    _intake(database_url, "migrate")
    _intake(database_url, "businesses", "create", BUSINESS_SLUG, "--name", "Bench")
    printed = _intake(
        database_url, "keys", "create", "--business", BUSINESS_SLUG,
        "--scopes", "submissions:write", "--json",
    )  # fmt: skip
    return _issued_key(printed)


def issue_key(database_url: str, *scopes: str) -> str:
    """Another key for the bench business, with these scopes."""
    printed = _intake(database_url, "keys", "create", "--business", BUSINESS_SLUG, "--scopes", ",".join(scopes), "--json")
    return _issued_key(printed)


def serve_argv(port: int, workers: int) -> list[str]:
    return [
        *intake_argv(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip


def _intake(database_url: str, *args: str) -> str:
    argv = [*intake_argv(), *args]
    try:
        done = subprocess.run(
            argv, cwd=REPO_ROOT, env=service_env(database_url),
            capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as error:
        raise ServiceUnavailable(f"`intake {' '.join(args)}` could not run: {error}") from error
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ServiceUnavailable(f"`intake {' '.join(args)}` exited {done.returncode}: {detail[0]}")
    return done.stdout


# One key-encryption key for the whole run (docs/PRIVACY.md); a deployment's own wins.
_RUN_KEK = os.environ.get("INTAKE_KEK") or generate_kek()
_RUN_SECRETS_KEY = os.environ.get("SECRETS_KEY") or SecretBox.generate()  # partner and webhook secrets


def run_keyring() -> Keyring:
    """The keyring of this run's KEK, as the service loads it."""
    return load_keyring(Settings(kek=_RUN_KEK))


def service_env(database_url: str, *, encrypt: bool = True) -> dict[str, str]:
    # One key at thousands of requests a second is the benchmark's load, not abuse: no rate limits.
    return {**os.environ, "DATABASE_URL": database_url, "RATE_LIMIT_PER_KEY": "off", "RATE_LIMIT_PER_BUSINESS": "off",
            "INTAKE_KEK": _RUN_KEK, "SECRETS_KEY": _RUN_SECRETS_KEY, "INTAKE_ENCRYPT_PERSONAL_DATA": "true" if encrypt else "false"}


def _issued_key(printed: str) -> str:
    # The whole output should be the JSON document; tolerate log lines printed before it.
    candidates = [printed] + [line for line in reversed(printed.splitlines()) if line.startswith("{")]
    for candidate in candidates:
        try:
            return msgspec.json.decode(candidate, type=IssuedKey).key
        except msgspec.DecodeError:
            continue
    raise ServiceUnavailable(f"`intake keys create --json` printed no key: {printed[:200]!r}")
