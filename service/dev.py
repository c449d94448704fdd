"""`intake dev`: embedded PostgreSQL and Redis when no URLs are given, migrations, a demo key, the API."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import structlog
import uvicorn

from events.seals import new_private_text
from projections.secretbox import SecretBox
from service import admin, migrations, roles
from service.connections import raise_fd_limit
from service.devstack import EmbeddedPostgres, EmbeddedRedis
from service.http.app import create_app
from service.keyring import generate_kek
from service.logs import configure_logging
from service.runner import uvicorn_options
from service.settings import Settings
from service.worker import run_worker

DEMO_SLUG = "demo"
DEMO_SCOPES = ["submissions:write", "consultations:read", "consultations:decide", "audit:read"]
# The embedded cluster's app role. Its trust auth ignores the password, but the URL has the shape a
# real deployment's has; the password is generated once and kept in the state dir.
DEV_APP_USER = "intake_app_login"
DEV_PASSWORD_FILE = "app-role.password"
DEV_KEK_FILE = "key-encryption-key"  # INTAKE_KEK_FILE when neither it nor INTAKE_KEK is set
DEV_SEAL_KEY_FILE = "seal.key"  # the worker signs seals with it (docs/INTEGRITY.md)
DEV_SECRETS_KEY_FILE = "secrets.key"  # partner and webhook secrets are sealed with it (docs/WEBHOOKS.md)
_log = structlog.get_logger("intake.dev")


def run_dev(settings: Settings, *, host: str, port: int, state_dir: str) -> int:
    """Start what is missing, run everything until Ctrl-C or SIGTERM, then stop it all in order."""
    configure_logging(settings.log_level, settings.log_format)
    raise_fd_limit()
    state = Path(state_dir).resolve()
    state.mkdir(parents=True, exist_ok=True)
    if not (settings.kek or settings.kek_file):  # a development KEK, kept beside the data it protects
        settings = dataclasses.replace(settings, kek_file=str(_dev_key(state / DEV_KEK_FILE, generate_kek)))
    if not (settings.seal_key or settings.seal_key_file):
        settings = dataclasses.replace(settings, seal_key_file=str(_dev_key(state / DEV_SEAL_KEY_FILE, new_private_text)))
    if not (settings.secrets_key or settings.secrets_key_file):
        settings = dataclasses.replace(settings, secrets_key_file=str(_dev_key(state / DEV_SECRETS_KEY_FILE, SecretBox.generate)))
    with contextlib.ExitStack() as stack:
        if not settings.database_url:
            postgres = stack.enter_context(EmbeddedPostgres(state / "postgres"))
            app_url = roles.with_login(postgres.url(), DEV_APP_USER, _dev_password(state))
            settings = dataclasses.replace(settings, owner_database_url=postgres.url(), database_url=app_url)
            _log.info("dev.postgres_started", port=postgres.port)
        if not settings.redis_url:
            redis = stack.enter_context(EmbeddedRedis(state / "redis"))
            settings = dataclasses.replace(settings, redis_url=redis.url())
            _log.info("dev.redis_started", port=redis.port)
        asyncio.run(_prepare(settings, host, port))
        asyncio.run(_serve_everything(settings, host, port))
    _log.info("dev.stopped")
    return 0


class _Server(uvicorn.Server):
    # Signals are handled once, below, for the API and the workers together.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def _serve_everything(settings: Settings, host: str, port: int) -> None:
    """The API, the outbox relay and the projector workers until SIGINT/SIGTERM, then a bounded shutdown."""
    stop = asyncio.Event()
    server = _Server(uvicorn.Config(create_app(settings), host=host, port=port, **uvicorn_options(settings)))

    def shut_down() -> None:
        server.should_exit = True
        stop.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, shut_down)
    workers = asyncio.create_task(run_worker(settings, stop))
    try:
        await server.serve()  # in-flight requests get SHUTDOWN_GRACE_MS
    finally:
        stop.set()
        await asyncio.wait_for(workers, timeout=settings.shutdown_grace_ms / 1000)


async def _prepare(settings: Settings, host: str, port: int) -> None:
    """What `intake migrate` does, as the owner, then a demo business and key; the app runs as DATABASE_URL."""
    conn = await asyncpg.connect(settings.require_owner_database_url())
    try:
        await migrations.migrate(conn, migrations.load_migrations())
        login = await roles.provision(conn, settings.require_database_url())
        if await conn.fetchval("SELECT id FROM businesses WHERE slug = $1", DEMO_SLUG) is None:
            await admin.create_business(conn, DEMO_SLUG, "Demo Telehealth")
        created = await admin.create_key(conn, business=DEMO_SLUG, scopes=DEMO_SCOPES, admin=False)
    finally:
        await conn.close()
    print(_banner(created.key, host, port, settings, login), file=sys.stderr, flush=True)


def _dev_key(path: Path, generate: Callable[[], str]) -> Path:
    """A development key, made once in the state dir (never for production: it sits next to the data it
    protects; never in the repository: .state is ignored)."""
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(generate() + "\n")
    return path


def _dev_password(state: Path) -> str:
    path = state / DEV_PASSWORD_FILE
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24))
    return path.read_text().strip()


def _banner(key: str, host: str, port: int, settings: Settings, login: roles.LoginRole) -> str:
    base = f"http://{host}:{port}"
    body = ('{"customer_id":"cus_123","product_id":"prod_abc","patient":{"first_name":"Ada","last_name":"Lovelace",'
            '"email":"ada@example.com","date_of_birth":"1990-12-10"},"chief_complaint":"Persistent cough"}')
    return "\n".join([
        "", "intake is running.",
        f"  API:       {base}   (OpenAPI: {base}/schema/openapi.json)",
        f"  Database:  {roles.redacted(settings.require_database_url())}   (the app's role: API and workers)",
        f"  Owner:     {roles.redacted(settings.require_owner_database_url())}   (migrations, businesses, keys)",
        *([] if login.confined else [f"  {login.describe()}"]),
        f"  Redis:     {settings.redis_url}",
        f"  API key for business '{DEMO_SLUG}' (shown once): {key}",
        "", "Try:",
        f"  curl -sS -X POST {base}/v1/businesses/{DEMO_SLUG}/consult-submissions \\",
        f"    -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\",
        "    -H \"Idempotency-Key: $(date +%s%N)\" \\",
        f"    -d '{body}'",
        "", "Ctrl-C stops everything.", "",
    ])
