"""A rebuild's background priority reaches its whole session (the kernel's autogroup) only when that
session is its own: then it is lowered while the command runs and set back after it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from service.priority import AUTOGROUP

ROOT = Path(__file__).resolve().parents[2]
# Prints the session's nice inside the block and after it ("-" on a kernel without autogroup).
PROBE = ("from service import priority; from pathlib import Path; group = Path('/proc/self/autogroup')\n"
         "nice = lambda: group.read_text().split()[-1] if group.exists() else '-'\n"
         "with priority.background(10): inside = nice()\nprint(inside, nice())")
# Where the kernel has no autogroup, nice alone ranks every process and there is nothing more to do.
OWN, SHARED = ("10 0", "0 0") if AUTOGROUP.exists() else ("- -", "- -")


def test_a_session_of_its_own_is_lowered_while_the_command_runs_and_set_back_after():
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         start_new_session=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == OWN


def test_a_session_shared_with_an_unrelated_process_is_left_alone():
    # The shell starts a sleeper, then the probe: a sibling of the probe, neither its parent nor its child.
    shell = f"sleep 30 & {sys.executable} -c \"$PROBE\"; status=$?; kill $!; exit $status"
    out = subprocess.run(["sh", "-c", shell], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         env={**os.environ, "PROBE": PROBE}, start_new_session=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == SHARED
