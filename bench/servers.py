"""Start an HTTP server as a subprocess, wait until it answers, and always stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent  # not resolved: keep the venv's bin, not the base python's
READY_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
POLL_INTERVAL_S = 0.1


class ServerDidNotStart(RuntimeError):
    """The server exited or did not answer HTTP before its deadline."""


def uvicorn_argv(factory: str, port: int, workers: int) -> list[str]:
    """uvicorn as the benchmark runs every baseline: uvloop, httptools, no access log."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", factory,
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
        "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


@contextlib.contextmanager
def running_server(
    argv: Sequence[str], *, port: int, env: Mapping[str, str], log_path: Path
) -> Iterator[subprocess.Popen]:
    """Run `argv` until the block ends; ready once any HTTP response comes back."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    with open(log_path, "ab") as log:
        # A session of its own, so that stopping it also reaches uvicorn's worker processes.
        process = subprocess.Popen(
            list(argv), cwd=REPO_ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            _wait_until_ready(process, port, log_path)
            yield process
        finally:
            stop(process)


def _wait_until_ready(process: subprocess.Popen, port: int, log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = _tail(log_path)
            last = tail.splitlines()[-1] if tail else "(empty log)"
            raise ServerDidNotStart(f"exited with {process.returncode}: {last}\nlog tail:\n{tail}")
        if _answers_http(port):
            return
        time.sleep(POLL_INTERVAL_S)
    raise ServerDidNotStart(f"no HTTP answer within {READY_TIMEOUT_S}s; log tail:\n{_tail(log_path)}")


def _answers_http(port: int) -> bool:
    # Any status (404 included) proves the app finished its startup and serves requests.
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


def stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group, then SIGKILL it after a grace period."""
    if process.poll() is not None:
        return
    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        _signal_group(process, signal.SIGKILL)
        process.wait(STOP_GRACE_S)
    # Workers that outlived their parent would hold the port into the next measurement.
    _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
