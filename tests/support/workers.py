"""`intake worker` as a real child process (projectors, relay and sweep), which tests can SIGKILL and start again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.servers import ROOT

STOP_TIMEOUT = 15.0  # seconds a SIGTERMed worker gets to finish its jobs before SIGKILL
EXIT_TIMEOUT = 10.0  # seconds to reap a SIGKILLed worker; it has no children, so this is generous


class WorkerProcess:
    """One `python -m service.cli worker`; every start appends to the same log, after a marker line."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self._env = {**os.environ, **env, "LOG_FORMAT": "json"}
        self._log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    @property
    def running(self) -> bool:
        """Whether the process we started last is alive."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Spawn the worker and return at once: it waits out a missing Redis by itself, so readiness means nothing."""
        if self.running:
            return
        self.starts += 1
        with self._log_path.open("ab") as log:
            log.write(f"--- start {self.starts} ---\n".encode())
            log.flush()
            self.process = subprocess.Popen([sys.executable, "-m", "service.cli", "worker"], env=self._env,
                                            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=ROOT)

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, jobs abandoned mid-transaction, a real crash."""
        if self.running:
            assert self.process is not None
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=EXIT_TIMEOUT)
            self.kills += 1

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        if self.running:
            assert self.process is not None
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.kill()

    def log_tail(self, size: int = 3000) -> str:
        """The end of the process's log, for failure messages."""
        return self._log_path.read_bytes()[-size:].decode(errors="replace") if self._log_path.exists() else ""
