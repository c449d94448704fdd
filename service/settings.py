"""One Settings value, read from the environment in main()/create_app() and passed down."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

# Generous defaults: they stop a runaway client or a retry storm, not a busy partner; a business
# can be given its own (`intake businesses limits`).
DEFAULT_PER_KEY = "submit=200/1s,decide=100/1s,read=400/1s,admin=50/1s"
DEFAULT_PER_BUSINESS = "submit=1000/1s,decide=500/1s,read=2000/1s,admin=200/1s"
# `intake serve` runs one worker process per CPU it may use, up to this many: each holds its own pool
# of up to DB_POOL_MAX connections, and past a few workers PostgreSQL's share of the CPUs is what limits.
MAX_AUTO_WORKERS = 8
CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # cgroup v2: "QUOTA PERIOD" in µs, or "max PERIOD"


class SettingsError(Exception):
    """A setting has a value intake cannot use."""


def inline_or_file(inline: str | None, path: str | None, *, file_setting: str) -> str | None:
    """A secret configured either inline or as a file's path (the inline value wins); None when
    neither is set. An unreadable file is a SettingsError naming the setting, never the value."""
    if inline:
        return inline
    if not path:
        return None
    try:
        return Path(path).read_text()
    except OSError as error:
        raise SettingsError(f"{file_setting}: cannot read the key file ({error.strerror})") from None


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything configurable, with production-safe defaults."""

    database_url: str | None = None  # the app's role: may append to the log, never change it
    owner_database_url: str | None = None  # the schema's owner: migrations and admin commands
    redis_url: str | None = None
    environment: str = "development"  # "production" refuses fault injection
    max_body_bytes: int = 64 * 1024
    db_pool_min: int = 4
    db_pool_max: int = 24
    db_connect_timeout_ms: int = 3000
    db_acquire_timeout_ms: int = 2000
    db_statement_timeout_ms: int = 5000
    readiness_timeout_ms: int = 1000
    shutdown_grace_ms: int = 10000
    auth_cache_ttl_s: int = 10
    serve_workers: int = 0  # `intake serve` processes; 0: one per usable CPU (see auto_workers)
    # Connection-level limits, per server worker process (see service/connections.py).
    http_header_timeout_s: int = 10  # from connect, or a kept-alive request's first byte, to its last header
    http_body_timeout_s: int = 10  # from the last header to the last body byte
    http_keepalive_timeout_s: int = 5  # idle time between requests on one connection
    http_max_header_bytes: int = 32 * 1024  # a request line and headers larger than this get 431
    http_max_connections: int = 4096  # open sockets; at the cap, the longest-waiting-on-its-client is closed
    http_max_in_flight: int = 2048  # requests the app is working on; beyond this, 503 at once
    faults: str = ""
    log_level: str = "info"
    log_format: str = "auto"  # auto: JSON unless stderr is a terminal
    # The worker's /livez and /readyz (service/probes.py), in `intake worker` and `intake dev`; 0: none.
    worker_health_port: int = 0
    worker_health_host: str = "127.0.0.1"
    # Per route class (submit, decide, read, admin): see service/ratelimit.py and the README.
    rate_limit_per_key: str = DEFAULT_PER_KEY
    rate_limit_per_business: str = DEFAULT_PER_BUSINESS
    # A slower answer counts as Redis down (fail open). It includes the event loop's own delays, so
    # it must stay well above them under load, or the limits would switch off exactly when busy.
    rate_limit_timeout_ms: int = 200
    # Key-encryption keys (service/keyring.py): a file of base64 keys, one a line, or the keys
    # themselves comma-separated; the first wraps new data keys.
    kek_file: str | None = None
    kek: str | None = None
    # Off only to measure what encryption costs (bench/): new events then keep personal data
    # in clear, readable until `intake patients encrypt-existing` seals them.
    encrypt_personal_data: bool = True
    # Seals (docs/INTEGRITY.md): the Ed25519 private key as base64 of its 32-byte seed, inline or in
    # a file (a secret: never in the repository); or, where only verifying, the public key.
    seal_key: str | None = None
    seal_key_file: str | None = None
    seal_public_key: str | None = None
    seal_interval_s: int = 60  # the worker seals this often, when the log grew; 0: never
    # Partner and webhook signing secrets are encrypted with this (base64 of 32 bytes), inline or in
    # a file; required by every process that uses them, with no default (projections/secretbox.py).
    secrets_key: str | None = None
    secrets_key_file: str | None = None
    # Outbound webhooks (projections/deliveries.py): per-request timeout, per-endpoint concurrency
    # in each worker, the retry schedule's first delay and its number of attempts (the defaults
    # spread 10 attempts over about a day), and the networks endpoints may be in although private,
    # loopback or link-local (CIDRs, comma-separated; empty: none).
    webhook_timeout_ms: int = 10_000
    webhook_endpoint_concurrency: int = 8  # 4 left a queue on a saturated machine (docs/PERFORMANCE.md)
    webhook_retry_base_ms: int = 5_000
    webhook_max_attempts: int = 10
    webhook_allowed_networks: str = ""

    # long: one line per setting, a flat table read top to bottom
    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from environment variables (see README: Configuration)."""
        env = os.environ if env is None else env
        return cls(
            database_url=env.get("DATABASE_URL") or None,
            owner_database_url=env.get("OWNER_DATABASE_URL") or None,
            redis_url=env.get("REDIS_URL") or None,
            environment=env.get("INTAKE_ENV", "development"),
            max_body_bytes=_int(env, "MAX_BODY_BYTES", 64 * 1024),
            db_pool_min=_int(env, "DB_POOL_MIN", 4),
            db_pool_max=_int(env, "DB_POOL_MAX", 24),
            db_connect_timeout_ms=_int(env, "DB_CONNECT_TIMEOUT_MS", 3000),
            db_acquire_timeout_ms=_int(env, "DB_ACQUIRE_TIMEOUT_MS", 2000),
            db_statement_timeout_ms=_int(env, "DB_STATEMENT_TIMEOUT_MS", 5000),
            readiness_timeout_ms=_int(env, "READINESS_TIMEOUT_MS", 1000),
            shutdown_grace_ms=_int(env, "SHUTDOWN_GRACE_MS", 10000),
            auth_cache_ttl_s=_int(env, "AUTH_CACHE_TTL_S", 10),
            serve_workers=_int(env, "INTAKE_WORKERS", 0),
            http_header_timeout_s=_int(env, "HTTP_HEADER_TIMEOUT_S", 10),
            http_body_timeout_s=_int(env, "HTTP_BODY_TIMEOUT_S", 10),
            http_keepalive_timeout_s=_int(env, "HTTP_KEEPALIVE_TIMEOUT_S", 5),
            http_max_header_bytes=_int(env, "HTTP_MAX_HEADER_BYTES", 32 * 1024),
            http_max_connections=_int(env, "HTTP_MAX_CONNECTIONS", 4096),
            http_max_in_flight=_int(env, "HTTP_MAX_IN_FLIGHT", 2048),
            faults=env.get("INTAKE_FAULTS", ""),
            log_level=env.get("LOG_LEVEL", "info"),
            log_format=env.get("LOG_FORMAT", "auto"),
            worker_health_port=_int(env, "WORKER_HEALTH_PORT", 0),
            worker_health_host=env.get("WORKER_HEALTH_HOST", "127.0.0.1"),
            rate_limit_per_key=env.get("RATE_LIMIT_PER_KEY", DEFAULT_PER_KEY),
            rate_limit_per_business=env.get("RATE_LIMIT_PER_BUSINESS", DEFAULT_PER_BUSINESS),
            rate_limit_timeout_ms=_int(env, "RATE_LIMIT_TIMEOUT_MS", 200),
            kek_file=env.get("INTAKE_KEK_FILE") or None,
            kek=env.get("INTAKE_KEK") or None,
            encrypt_personal_data=env.get("INTAKE_ENCRYPT_PERSONAL_DATA", "true").lower() not in {"false", "0", "off"},
            seal_key=env.get("INTAKE_SEAL_KEY") or None,
            seal_key_file=env.get("INTAKE_SEAL_KEY_FILE") or None,
            seal_public_key=env.get("INTAKE_SEAL_PUBLIC_KEY") or None,
            seal_interval_s=_int(env, "INTAKE_SEAL_INTERVAL_S", 60),
            secrets_key=env.get("SECRETS_KEY") or None,
            secrets_key_file=env.get("SECRETS_KEY_FILE") or None,
            webhook_timeout_ms=_int(env, "WEBHOOK_TIMEOUT_MS", 10_000),
            webhook_endpoint_concurrency=_int(env, "WEBHOOK_ENDPOINT_CONCURRENCY", 8),
            webhook_retry_base_ms=_int(env, "WEBHOOK_RETRY_BASE_MS", 5_000),
            webhook_max_attempts=_int(env, "WEBHOOK_MAX_ATTEMPTS", 10),
            webhook_allowed_networks=env.get("WEBHOOK_ALLOWED_NETWORKS", ""),
        )

    def workers(self, requested: int | None) -> tuple[int, str]:
        """How many `intake serve` processes to run, and why: --workers, else INTAKE_WORKERS, else auto."""
        if requested is not None:
            chosen, source = requested, "--workers"
        elif self.serve_workers:
            chosen, source = self.serve_workers, "INTAKE_WORKERS"
        else:
            return auto_workers(usable_cpus()), "one per usable CPU"
        if chosen < 1:
            raise SettingsError(f"{source} must be at least 1, got {chosen}")
        return chosen, source

    def require_database_url(self) -> str:
        """DATABASE_URL, or a clear error."""
        if not self.database_url:
            raise SettingsError("DATABASE_URL is not set")
        return self.database_url

    def require_owner_database_url(self) -> str:
        """OWNER_DATABASE_URL, else DATABASE_URL (one role for everything: `intake migrate` warns)."""
        return self.owner_database_url or self.require_database_url()


def usable_cpus(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The CPUs this process may run on: its affinity (a container's cpuset, not the host's CPUs),
    lowered to its cgroup's CPU quota when it has one (`docker run --cpus 2`)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # no sched_getaffinity outside Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        return max(1, min(cpus, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):  # no cgroup v2 file, or "max": no quota
        return cpus


def auto_workers(cpus: int) -> int:
    """The default `intake serve` worker count on a machine with `cpus` usable CPUs.

    One per CPU: a worker is one Python process, CPU-bound under load (docs/PERFORMANCE.md), so one
    per core is what uses the machine; more only adds context switches and PostgreSQL connections."""
    return max(1, min(cpus, MAX_AUTO_WORKERS))
