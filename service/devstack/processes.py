"""Child server processes: ports, data directories, logs, and ending what an earlier run left behind."""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self

import psutil

LOOPBACK = "127.0.0.1"
POLL_INTERVAL = 0.05  # seconds between readiness probes; a PostgreSQL probe spawns pg_isready
STRAY_TIMEOUT = 10.0  # seconds a server left by an earlier run gets to shut down before SIGKILL
# Seconds orphaned backends get to notice their postmaster died: idle or waiting ones exit within
# milliseconds, but a CPU-bound query only checks at its end, so it is SIGKILLed after this.
ORPHAN_GRACE = 1.0
LOG_TAIL_BYTES = 4000


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def _port_is_free(port: int) -> bool:
    with socket.socket() as sock:
        # Both servers bind with SO_REUSEADDR, so TIME_WAIT leftovers of closed clients do not stop them.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def _choose_port(requested: int | None, record: Path) -> int:
    """The requested port, else the one remembered in `record` if still free, else a fresh one."""
    if requested is not None:
        return requested
    remembered = record.read_text().strip() if record.is_file() else ""
    if remembered.isdigit() and _port_is_free(int(remembered)):
        return int(remembered)
    return free_port()


def _wait_port_free(port: int, deadline: float) -> None:
    while not _port_is_free(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} is still in use")
        time.sleep(POLL_INTERVAL)


def _end_strays(directory: Path, name: str, sig: signal.Signals | None, grace: float) -> None:
    """End processes called `name` working in `directory` (servers chdir there; backends inherit it).

    `sig` goes to each tree's root only: a backend takes SIGINT as "cancel query", its
    postmaster as "shut down". Whatever is left after `grace` gets SIGKILL.
    """
    target = str(directory.resolve())
    procs = [proc for proc in psutil.process_iter(["name", "cwd", "ppid"])
             if proc.info["name"] == name and proc.info["cwd"] == target]
    pids = {proc.pid for proc in procs}
    for proc in procs:
        if sig is not None and proc.info["ppid"] not in pids:
            _signal(proc, sig)
    alive = _wait_gone(procs, grace)
    for proc in alive:
        _signal(proc, signal.SIGKILL)
    _wait_gone(alive, STRAY_TIMEOUT)


def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Return the processes still alive at the deadline.

    A zombie counts as gone: it holds no socket or shared memory, and init may take seconds to reap strays.
    """
    deadline = time.monotonic() + timeout
    while True:
        procs = [proc for proc in procs if _is_alive(proc)]
        if not procs or time.monotonic() > deadline:
            return procs
        time.sleep(POLL_INTERVAL)


def _is_alive(proc: psutil.Process) -> bool:
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _signal(proc: psutil.Process, sig: signal.Signals) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):  # it exited between listing and signalling
        proc.send_signal(sig)


def _end_child(proc: subprocess.Popen[bytes], sig: signal.Signals, timeout: float) -> None:
    """Send `sig` and wait for the exit; SIGKILL if `timeout` passes first."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _log_tail(log: Path) -> str:
    if not log.is_file():
        return "(no log)"
    with log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - LOG_TAIL_BYTES))
        return handle.read().decode(errors="replace")


class ChildServer:
    """What both servers share: a child process, its data directory, its port and its log."""

    process_name = ""
    port_record = ""
    log_name = ""
    stop_signal = signal.SIGTERM

    def __init__(self, data_dir: Path, port: int | None) -> None:
        self.data_dir = Path(data_dir).absolute()
        self._requested_port = port
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.data_dir / self.log_name  # the server's stdout and stderr

    @property
    def running(self) -> bool:
        """Whether the server we started is alive."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def port(self) -> int:
        """The TCP port; chosen by the first start() when none was given."""
        if self._port is None:
            raise RuntimeError("no port yet: start() chooses it")
        return self._port

    def start(self, timeout: float) -> None:
        """Start the server and wait until it answers."""
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the server down gracefully, SIGKILL past `timeout`; nothing to do when it is not running."""
        self._end(self.stop_signal, timeout)

    def kill(self) -> None:
        """SIGKILL the server, like a crash, and wait until its processes and port are gone."""
        self._end(signal.SIGKILL, STRAY_TIMEOUT)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        was_serving = proc.poll() is None
        _end_child(proc, sig, timeout)
        _end_strays(self.data_dir, self.process_name, sig=None, grace=ORPHAN_GRACE)
        if was_serving:  # a server that died at startup may never have held the port
            _wait_port_free(self.port, time.monotonic() + STRAY_TIMEOUT)

    def _begin(self) -> bool:
        """Reap our dead child and end strays of a previous run; False if we are already running."""
        if self.running:
            return False
        self._end(signal.SIGKILL, STRAY_TIMEOUT)
        _end_strays(self.data_dir, self.process_name, self.stop_signal, grace=STRAY_TIMEOUT)
        return True

    def _claim_port(self) -> None:
        self._port = _choose_port(self._requested_port, self.data_dir / self.port_record)

    def _launch(self, argv: list[str], **popen: object) -> None:
        """Run argv as our child in its own session, output appended to the log."""
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(  # type: ignore[call-overload]
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **popen,
            )

    def _await_ready(self, probe: Callable[[int], bool], timeout: float) -> None:
        """Poll `probe` until it answers; on exit or timeout, stop the server and raise with the log tail."""
        deadline = time.monotonic() + timeout
        while not probe(self.port):
            assert self._proc is not None
            if self._proc.poll() is not None:
                self._fail(f"{self.process_name} exited with status {self._proc.returncode}")
            if time.monotonic() > deadline:
                self._fail(f"{self.process_name} did not answer within {timeout:g}s")
            time.sleep(POLL_INTERVAL)
        (self.data_dir / self.port_record).write_text(str(self.port))

    def _fail(self, why: str) -> None:
        self.stop(timeout=STRAY_TIMEOUT)
        raise RuntimeError(f"{why}; {self.log_path} ends:\n{_log_tail(self.log_path)}")

    def __enter__(self) -> Self:
        self.start()  # type: ignore[call-arg]  # each server has its own default timeout
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
