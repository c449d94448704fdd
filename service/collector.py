"""The cyclic garbage collector for long-running processes whose objects die young.

Start-up's objects (modules, routes, schemas, pools) are set aside (frozen) so that full collections
do not walk them again and again, and the young generation is collected less often than CPython's
700 net allocations: both the API and the JSONL replay keep a few hundred small containers per
request or row alive briefly, which the default threshold walked over and over (docs/PERFORMANCE.md).
Cycles are still collected; at most `young` objects wait for a collection.
"""

from __future__ import annotations

import gc


def set_aside_startup(young: int, *older: int) -> None:
    """Free what is garbage already, freeze the rest, then collect the young generation every `young`
    net allocations (and the older ones at `older`, if given, else as they were)."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(young, *(older or gc.get_threshold()[1:]))
