"""The 15-second sweep speaks at info only when it repaired something: an idle worker's log stays
quiet (it used to print two arq lines per sweep)."""

from __future__ import annotations

import logging

import asyncpg
import structlog

from projections.projector import Projector
from service.logs import configure_logging


async def test_a_sweep_that_finds_nothing_logs_nothing_at_info(database_url, keyring):
    pool = await asyncpg.create_pool(database_url, min_size=1, max_size=2)
    try:
        with structlog.testing.capture_logs() as seen:
            assert await Projector(pool, keyring).sweep() == 0
    finally:
        await pool.close()
    assert [entry for entry in seen if entry["log_level"] != "debug"] == []
    assert [entry["event"] for entry in seen] == ["projection.sweep_clean"]


def test_arqs_per_job_lines_are_quiet_unless_debugging():
    root = logging.getLogger()
    saved = (root.level, list(root.handlers), logging.getLogger("arq.worker").level)
    try:
        configure_logging("info", "json")
        assert logging.getLogger("arq.worker").getEffectiveLevel() == logging.WARNING
        logging.getLogger("arq.worker").setLevel(logging.NOTSET)
        configure_logging("debug", "json")
        assert logging.getLogger("arq.worker").getEffectiveLevel() == logging.DEBUG
    finally:
        root.setLevel(saved[0])
        root.handlers[:] = saved[1]
        logging.getLogger("arq.worker").setLevel(saved[2])
