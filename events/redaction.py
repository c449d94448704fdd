"""Tracebacks without messages, for logs: an exception's message can quote row data (a driver's
`invalid input syntax for type uuid: "…"`), and patient data never reaches a log."""

from __future__ import annotations

import traceback


def redacted_traceback(error: BaseException) -> str:
    """The frames and exception types of `error` and of its causes, without their messages:
    a driver's message can quote row data (`invalid input syntax for type uuid: "…"`)."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
    parts = []
    for exc in reversed(chain):  # the root cause first, as Python prints it
        frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
        parts.append(f"Traceback (most recent call last):\n{frames}{type(exc).__module__}.{type(exc).__qualname__}")
    return "\n\nwhich led to:\n\n".join(parts)
