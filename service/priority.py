"""Background priority for long operator commands (a rebuild), so that on a machine they share with
the API, the API's requests go first.

`os.nice` alone is not enough where the kernel groups processes by session when it shares the CPU
(autogroup, on by default on many Linux desktops and servers): nice then only ranks processes
within one session, and the API runs in a session of its own, so a niced rebuild still took half
the CPU from it. The session's own nice (/proc/self/autogroup) ranks sessions; it is lowered only
when nothing else in the session would be slowed: the session holds this process, the processes
it descends from (a shell or a supervisor waiting on it) and its own children, and nothing else
(not, say, a test suite's servers). It is set back when the command ends (not after a kill -9:
the session's nice then stays lowered until the session ends).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import psutil

AUTOGROUP = Path("/proc/self/autogroup")  # "/autogroup-123 nice 0"


@contextlib.contextmanager
def background(niceness: int) -> Iterator[None]:
    """This process at `niceness`, and its session too where that slows nothing else."""
    os.nice(niceness)
    restore = _lower_session(niceness) if _session_is_ours() else None
    try:
        yield
    finally:
        if restore is not None:
            with contextlib.suppress(OSError):
                AUTOGROUP.write_text(str(restore))


def _lower_session(niceness: int) -> int | None:
    """The session's previous nice, once raised to `niceness`; None where there is none to raise."""
    try:
        before = int(AUTOGROUP.read_text().split()[-1])
        if before >= niceness:
            return None
        AUTOGROUP.write_text(str(niceness))
    except (OSError, ValueError, IndexError):
        return None
    return before


def _session_is_ours() -> bool:
    """Whether every process of this session is this one, one it descends from, or its child."""
    me = psutil.Process()
    session = os.getsid(0)
    with contextlib.suppress(psutil.Error):
        mine = {me.pid, *(p.pid for p in me.parents()), *(p.pid for p in me.children(recursive=True))}
        for process in psutil.process_iter():
            with contextlib.suppress(OSError, psutil.Error):
                if process.pid not in mine and os.getsid(process.pid) == session:
                    return False
        return True
    return False
