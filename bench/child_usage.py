"""Wall time and peak RSS of one command: `python -m bench.child_usage OUT -- ARGV…`.

A fresh process per command, because RUSAGE_CHILDREN's ru_maxrss is the largest of every child a
process ever waited for: in the bench runner it would be wrk's or a server's. The command's stdout
and stderr are inherited; the figures go to the file OUT as JSON.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import msgspec

REPO_ROOT = Path(__file__).resolve().parent.parent


class ChildUsage(msgspec.Struct, kw_only=True):
    returncode: int
    seconds: float
    peak_rss_mb: float  # ru_maxrss of the command (Linux reports kilobytes)


class Measured:
    """A command started under this wrapper; `wait()` gives its figures."""

    def __init__(self, argv: list[str], env: Mapping[str, str], log: Path, *, quiet_stdout: bool,
                 timed_lines: bool = False) -> None:  # fmt: skip
        self._out = Path(tempfile.mkstemp(prefix="child-usage-", suffix=".json")[1])
        self.lines: list[str] = []  # with timed_lines: stdout lines, prefixed with seconds since the start
        stdout = subprocess.DEVNULL if quiet_stdout else subprocess.PIPE if timed_lines else None
        with open(log, "ab") as log_file:
            self.started = time.monotonic()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "bench.child_usage", str(self._out), "--", *argv], cwd=REPO_ROOT,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
                stdout=stdout or log_file, stderr=log_file,
                start_new_session=True,  # so a timeout can end the wrapper and the command together
            )  # fmt: skip
        if timed_lines:
            threading.Thread(target=self._read_lines, daemon=True).start()

    def _read_lines(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(f"{time.monotonic() - self.started:5.1f} s {line.decode(errors='replace').rstrip()}")

    def wait(self, timeout_s: float) -> ChildUsage:
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise RuntimeError(f"did not finish within {timeout_s:.0f} s") from None
        try:
            usage = msgspec.json.decode(self._out.read_bytes(), type=ChildUsage)
        finally:
            self._out.unlink(missing_ok=True)
        if usage.returncode != 0:
            raise RuntimeError(f"exited {usage.returncode}")
        return usage


def measure(argv: list[str], env: Mapping[str, str], log: Path, *, timeout_s: float,
            quiet_stdout: bool = False) -> ChildUsage:  # fmt: skip
    """Run `argv` to the end (stdout to /dev/null if `quiet_stdout`, else to `log`); its figures."""
    return Measured(argv, env, log, quiet_stdout=quiet_stdout).wait(timeout_s)


def main(argv: list[str]) -> int:
    out, separator, command = argv[0], argv[1], argv[2:]
    if separator != "--" or not command:
        print("usage: python -m bench.child_usage OUT -- ARGV…", file=sys.stderr)
        return 2
    started = time.monotonic()
    returncode = subprocess.run(command, check=False).returncode
    seconds = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    usage = ChildUsage(returncode=returncode, seconds=round(seconds, 3), peak_rss_mb=round(peak, 1))
    with open(out, "wb") as file:
        file.write(msgspec.json.encode(usage))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
