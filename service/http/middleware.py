"""The outermost ASGI layer: request id, one canonical log line and latency metrics per request."""

from __future__ import annotations

import re
import time

import structlog
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from prometheus_client import Histogram

from events.ids import request_id as new_request_id
from service.metrics import Metrics

_VALID_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,128}")  # fullmatch: $ would take a trailing newline
_log = structlog.get_logger("intake.http")
# Latency series already resolved: prometheus_client's labels() stringifies and looks them up under a
# lock on every call. Methods are whatever clients send, so the cache stops growing at this size.
_SERIES_CACHE_LIMIT = 1024


class RequestContext:
    """Wraps the whole app, so even routing errors (404/405) get an X-Request-ID and a log line."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self._app = app
        self._metrics = metrics
        self._series: dict[tuple[str, str, int], Histogram] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        request_id = _request_id(scope)
        text_id = request_id.decode()
        scope.setdefault("state", {})["request_id"] = text_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=text_id)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = message["headers"] = [*message.get("headers", ()), (b"x-request-id", request_id)]
                if limits := scope["state"].get("ratelimit_headers"):
                    headers += limits
            await send(message)

        try:
            await self._app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            # The template, not the path: paths and query strings may carry identifiers.
            route = scope.get("path_template") or "unmatched"
            self._latency(scope["method"], route, status).observe(elapsed)
            _log.info("http.request", method=scope["method"], route=route, status=status,
                      duration_ms=round(elapsed * 1000, 2))

    def _latency(self, method: str, route: str, status: int) -> Histogram:
        """The latency series of one (method, route, status)."""
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = self._metrics.request_seconds.labels(method, route, str(status))
            if len(self._series) < _SERIES_CACHE_LIMIT:
                self._series[key] = series
        return series


def _request_id(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            if _VALID_REQUEST_ID.fullmatch(value):
                return value
            break
    return new_request_id()
