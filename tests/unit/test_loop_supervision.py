"""The supervisor's arithmetic and bookkeeping: capped backoff, when a loop counts as failing,
and crash logs that carry an error's type and frames but never its message."""

from __future__ import annotations

from events.redaction import redacted_traceback
from service.loops import FAILING_AFTER, RESTART_MAX_S, RESTART_MIN_S, STALLED_AFTER_S, LoopHealth, restart_delay

PATIENT = ("ada@example.com", "Lovelace")  # only ever passed as values, so no source line quotes them


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_restart_delay_doubles_from_the_minimum_and_stops_at_the_cap_however_long_the_streak():
    assert [restart_delay(n) for n in (1, 2, 3)] == [RESTART_MIN_S, 2 * RESTART_MIN_S, 4 * RESTART_MIN_S]
    assert restart_delay(10**6) == restart_delay(2**63) == RESTART_MAX_S


def test_a_loop_is_failing_after_crashes_in_a_row_and_ok_again_after_one_healthy_iteration():
    health = LoopHealth(Clock())
    healthy = health.watch("relay")
    for _ in range(FAILING_AFTER - 1):
        health.crashed("relay", KeyError("x"))
    assert health.ready() and health.report()["relay"]["state"] == "restarting"
    health.crashed("relay", KeyError("x"))
    assert not health.ready()
    assert health.report()["relay"] | {"healthy_s_ago": 0} == {
        "state": "failing", "crashes_in_a_row": FAILING_AFTER, "last_error": "KeyError", "healthy_s_ago": 0}
    healthy()
    assert health.ready() and health.report()["relay"]["state"] == "ok"


def test_a_loop_with_a_stall_bound_is_failing_once_it_has_gone_that_long_without_a_healthy_iteration():
    clock = Clock()
    health = LoopHealth(clock)
    healthy = health.watch("listener", stall_after_s=60)
    health.watch("sweep", stall_after_s=None)
    clock.now = 61
    assert health.report()["listener"]["state"] == "failing" and health.report()["sweep"]["state"] == "ok"
    healthy()
    assert health.ready()


def test_a_loop_mirrored_from_another_process_reads_as_that_process_reported_it_and_stalls_when_reports_stop():
    clock, child_clock = Clock(), Clock()
    child = LoopHealth(child_clock)
    child.watch("webhooks.sender")
    for _ in range(FAILING_AFTER):
        child.crashed("webhooks.sender", KeyError("x"))
    child_clock.now = 2.5
    health = LoopHealth(clock)
    clock.now = 100
    health.mirror("webhooks.sender", child.report()["webhooks.sender"])
    assert not health.ready()
    assert health.report()["webhooks.sender"] == child.report()["webhooks.sender"]
    child.healthy("webhooks.sender")
    health.mirror("webhooks.sender", child.report()["webhooks.sender"])
    assert health.ready() and health.report()["webhooks.sender"]["healthy_s_ago"] == 0
    clock.now = 100 + STALLED_AFTER_S + 1  # no report since: the process is stuck or gone
    assert health.report()["webhooks.sender"]["state"] == "failing"


def test_a_crash_log_names_the_types_and_frames_of_the_error_and_its_cause_but_not_their_messages():
    def fail(email: str, last_name: str) -> None:  # the data arrives as values, as row data does
        try:
            raise ValueError(f"invalid input syntax for type uuid: {email!r}")
        except ValueError as cause:
            raise RuntimeError(f"row ({last_name}) refused") from cause

    try:
        fail(*PATIENT)
    except RuntimeError as error:
        logged = redacted_traceback(error)
    assert "builtins.ValueError" in logged and "builtins.RuntimeError" in logged
    assert logged.index("ValueError") < logged.index("RuntimeError")  # the root cause first
    assert "in fail" in logged
    assert "ada@example.com" not in logged and "Lovelace" not in logged
