"""structlog setup: JSON lines unless on a terminal; stable dotted event names; no patient data."""

from __future__ import annotations

import logging
import sys

import msgspec
import structlog

# Renders what the stdlib json module could not as repr, as structlog's JSONRenderer does.
_JSON = msgspec.json.Encoder(enc_hook=repr)


def _json_bytes(event: object, **_: object) -> bytes:
    return _JSON.encode(event)


def _json_text(event: object, **_: object) -> str:
    return _JSON.encode(event).decode()


def configure_logging(level: str = "info", fmt: str = "auto") -> None:
    """Configure structlog and route the standard library's loggers through the same output."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    # JSON lines are rendered by msgspec straight to bytes and written unencoded: a third of the
    # stdlib json + print path's cost, on the one line every request logs (docs/PERFORMANCE.md).
    renderer = structlog.processors.JSONRenderer(_json_text) if as_json else structlog.dev.ConsoleRenderer()
    as_bytes = as_json and hasattr(sys.stderr, "buffer")  # a replaced stderr may take text only
    own_renderer = structlog.processors.JSONRenderer(_json_bytes) if as_bytes else renderer
    shared = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, own_renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=(structlog.BytesLoggerFactory(sys.stderr.buffer) if as_bytes
                        else structlog.PrintLoggerFactory(sys.stderr)),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Our own canonical line per request replaces uvicorn's access log (which would log query strings).
    logging.getLogger("uvicorn.access").disabled = True
    # arq logs every job's start and end at info: the 15-second sweep alone made two lines each
    # time, repairing nothing. Failed jobs still show (warning and above); our own lines say what
    # a job changed (projection.swept).
    if logging.getLogger().level > logging.DEBUG:
        logging.getLogger("arq.worker").setLevel(logging.WARNING)
