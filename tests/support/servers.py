"""Running the real API for tests: in-process on a loopback port, or as a real child process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import uvicorn

from service.devstack import free_port
from service.http.app import create_app
from service.runner import uvicorn_options
from service.settings import Settings

READY_TIMEOUT = 30.0
ROOT = Path(__file__).resolve().parents[2]


class _QuietServer(uvicorn.Server):
    # The test runner owns signals: an in-process server must not take SIGINT from pytest.
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def running_api(settings: Settings, **app_kwargs: object) -> AsyncIterator[str]:
    """The real app behind a real uvicorn server on 127.0.0.1, in this event loop; yields its base URL."""
    port = free_port()
    server = _QuietServer(uvicorn.Config(create_app(settings, **app_kwargs), host="127.0.0.1", port=port,
                                         **uvicorn_options(settings)))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + READY_TIMEOUT
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("the in-process API did not start")
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, timeout=15)


class ApiProcess:
    """`intake serve` as a real child process, which tests can SIGKILL and start again."""

    def __init__(self, env: dict[str, str], log_path: Path, *, workers: int = 1) -> None:
        self.port = free_port()
        # Tests drive one key far harder than a client would: no rate limits unless a test asks.
        self._env = {"RATE_LIMIT_PER_KEY": "off", "RATE_LIMIT_PER_BUSINESS": "off", **os.environ, **env,
                     "LOG_FORMAT": "json"}
        self._log_path = log_path
        self.workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """Where the process listens."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start and wait until /livez answers."""
        log = self._log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.workers)],
            env=self._env, stdout=log, stderr=log, cwd=ROOT)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"intake serve exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.base_url + "/livez", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"intake serve did not become live: {self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no flushing, a real crash."""
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, size: int = 3000) -> str:
        """The end of the process's log, for failure messages."""
        return self._log_path.read_bytes()[-size:].decode(errors="replace") if self._log_path.exists() else ""
