"""uvicorn's httptools protocol with connection-level defences: idle and half-sent sockets can neither
stay open nor crowd out valid requests.

uvicorn arms no timer on a connection until it has sent a first response, so a socket that sends nothing,
half a head, or a head and part of its body is held for ever; and its limit_concurrency counts such
sockets, so ~2048 of them made every valid request a 503. Here, per connection, it is always someone's
turn, and the client's turn is bounded:

  head  the next request's line and headers are due: HEADER_TIMEOUT from the connect, or from the first
        byte after a kept-alive pause; more than MAX_HEADER_BYTES of them get 431
  body  its body is due: BODY_TIMEOUT from the last header; the app sees the request only once it has
        all of it (as a buffering proxy would), so a stalled upload holds no app task
  app   the app owes a response: no client timer; the in-flight cap (503) counts only these requests
  idle  between requests: uvicorn's own keep-alive timer

Sockets on their client's turn are kept longest-waiting first; a connection beyond MAX_CONNECTIONS closes
the longest-waiting one to make room, so idle sockets cannot exhaust the cap either.
"""

from __future__ import annotations

import asyncio
import resource
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Literal

from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle
from uvicorn.server import ServerState

from service.settings import Settings, SettingsError

# Descriptors kept back from the connection cap: database pool, Redis, logs, the listening socket.
FD_RESERVE = 256
MIN_CONNECTIONS = 16


def _answer(status: bytes) -> bytes:
    return b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"


_REQUEST_TIMEOUT = _answer(b"408 Request Timeout")
_HEAD_TOO_LARGE = _answer(b"431 Request Header Fields Too Large")
_NO_ROOM = _answer(b"503 Service Unavailable")
_OVER_CAPACITY = (b'{"type":"https://intake.dev/problems/over-capacity","title":"Over capacity","status":503,'
                  b'"detail":"Too many requests in flight here; retry shortly."}')


async def over_capacity(scope: Any, receive: Any, send: Any) -> None:
    """The answer beyond HTTP_MAX_IN_FLIGHT: a problem like every other error, with Retry-After,
    at the cost of nothing but these two sends (the app, its pool and its logs are spared)."""
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/problem+json"), (b"retry-after", b"1"),
        (b"content-length", str(len(_OVER_CAPACITY)).encode()), (b"x-request-id", uuid.uuid4().hex.encode())]})
    await send({"type": "http.response.body", "body": _OVER_CAPACITY})


@dataclass(frozen=True, slots=True)
class ConnectionLimits:
    """The limits one server worker applies to its connections (see Settings.http_*)."""

    header_timeout_s: float
    body_timeout_s: float
    max_header_bytes: int
    max_connections: int
    max_in_flight: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        """The configured limits, the connection cap kept under this process's descriptor limit."""
        for name in ("header_timeout_s", "body_timeout_s", "keepalive_timeout_s", "max_header_bytes",
                     "max_connections", "max_in_flight"):
            if getattr(settings, f"http_{name}") <= 0:
                raise SettingsError(f"HTTP_{name.upper()} must be positive")
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = settings.http_max_connections
        if soft != resource.RLIM_INFINITY:
            cap = max(min(cap, soft - FD_RESERVE), MIN_CONNECTIONS)
        return cls(settings.http_header_timeout_s, settings.http_body_timeout_s, settings.http_max_header_bytes,
                   cap, settings.http_max_in_flight)


def raise_fd_limit() -> None:
    """Lift the soft descriptor limit to the hard one (often 1024 → 2^20), inherited by spawned workers,
    so that the connection cap, not the descriptor table, is what bounds sockets."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard and hard != resource.RLIM_INFINITY:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _waiting_on_clients(server_state: ServerState) -> OrderedDict[GuardedHttpToolsProtocol, None]:
    """One per server (worker): the connections on their client's turn, longest-waiting first."""
    waiting = getattr(server_state, "intake_waiting_on_clients", None)
    if waiting is None:
        waiting = server_state.intake_waiting_on_clients = OrderedDict()  # type: ignore[attr-defined]
    return waiting


class _HeadWithBody:
    """The transport as each request's cycle sees it: the first write of a response (its status line and
    headers) waits for the next write (its body) or the end of this turn of the event loop, whichever comes
    first, so a response goes out in one send instead of two (12 % of the API's CPU was these sends, in the
    bench's profile, docs/PERFORMANCE.md). Nothing else writes to the socket while a response is being
    sent, so the order of bytes is unchanged; whatever is held is sent before the transport closes."""

    __slots__ = ("_transport", "_loop", "_held", "_armed")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: bytes | None = None
        self._armed = False

    def arm(self) -> None:
        """A new response starts: hold its first write."""
        self._armed = True

    def write(self, data: bytes) -> None:
        if self._armed:
            self._armed = False
            self._held = data
            self._loop.call_soon(self.flush)  # a response that sends its head alone (HEAD, streaming)
        elif self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held + data)
        else:
            self._transport.write(data)

    def flush(self) -> None:
        """Send what is held, if anything."""
        if self._held is not None:
            held, self._held = self._held, None
            self._transport.write(held)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """HttpToolsProtocol with the turns, timers and caps described above; the parsing hot path is unchanged."""

    def __init__(self, config: Config, server_state: ServerState, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None, *, limits: ConnectionLimits) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limit_concurrency = None  # replaced by limits.max_in_flight, which idle sockets do not count towards
        self._limits = limits
        self._app = self.app
        self._waiting = _waiting_on_clients(server_state)
        self._turn: Literal["head", "body", "app", "idle"] = "head"
        self._deadline: asyncio.TimerHandle | None = None
        self._head_bytes = 0
        self._deferred: tuple[RequestResponseCycle, Any] | None = None
        self._writer: _HeadWithBody | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._writer = _HeadWithBody(transport, self.loop)
        self._waiting[self] = None
        self._arm(self._limits.header_timeout_s)
        if len(self.connections) > self._limits.max_connections:
            self._make_room()

    def _make_room(self) -> None:
        oldest = next(iter(self._waiting))
        self._waiting.pop(oldest)
        if oldest is self:  # every other connection is waiting on the app: this one cannot be served
            self._close(_NO_ROOM)
        else:
            oldest._close(None)

    def connection_lost(self, exc: Exception | None) -> None:
        self._waiting.pop(self, None)
        self._disarm()
        self._deferred = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._turn == "idle":  # the first byte of the next request on a kept-alive connection
            self._turn, self._head_bytes = "head", 0
            self._arm(self._limits.header_timeout_s)
        head_pending = self._turn == "head"
        super().data_received(data)
        if head_pending and self._turn == "head":  # the whole chunk was head, and the head is not over
            self._head_bytes += len(data)
            if self._head_bytes > self._limits.max_header_bytes and not self.transport.is_closing():
                self._close(_HEAD_TOO_LARGE)
        elif self._turn == "body" and self._deadline is None:
            self._arm(self._limits.body_timeout_s)

    def on_headers_complete(self) -> None:
        if self._turn == "head":
            self._disarm()
        self.app = over_capacity if len(self.tasks) >= self._limits.max_in_flight else self._app
        super().on_headers_complete()

    def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
        if cycle.more_body:
            self._turn = "body"
            if not cycle.waiting_for_100_continue:  # such a client sends its body only when the app asks
                self._deferred = (cycle, app)
                return
        else:
            self._app_turn()
        self._run(cycle, app)

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        if self._deferred and len(self._deferred[0].body) > HIGH_WATER_LIMIT:
            # uvicorn has paused reading until the app reads: let it (it refuses bodies over MAX_BODY_BYTES).
            self._start_deferred()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        if self._turn == "body":
            self._disarm()
            self._app_turn()
            if self._deferred:
                self._start_deferred()

    def on_response_complete(self) -> None:
        if self._writer is not None:
            self._writer.flush()  # a response with nothing after its head (HEAD) is complete now
        if self._turn == "app" and not self.pipeline:
            self._turn = "idle"
            self._waiting[self] = None
        super().on_response_complete()  # arms the keep-alive timer, or starts the next pipelined request
        if self._turn == "body" and self._deadline is None:
            self._arm(self._limits.body_timeout_s)

    def shutdown(self) -> None:
        if self._deferred:  # the app never saw this request: nothing to drain
            self.transport.close()
            return
        super().shutdown()

    def _app_turn(self) -> None:
        self._turn = "app"
        self._waiting.pop(self, None)

    def _start_deferred(self) -> None:
        assert self._deferred is not None
        cycle, app = self._deferred
        self._deferred = None
        self._run(cycle, app)

    def _run(self, cycle: RequestResponseCycle, app: Any) -> None:
        assert self._writer is not None  # set when the connection was made
        cycle.transport = self._writer  # type: ignore[assignment]  # a transport as far as the cycle uses it
        self._writer.arm()
        super()._start_asgi_task(cycle, app)

    def _arm(self, seconds: float) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(seconds, self._timed_out)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _timed_out(self) -> None:
        self._deadline = None
        # A 408 tells a slow client why; a socket that sent nothing, or whose app already answers, gets none.
        started = (self._turn == "head" and self._head_bytes > 0) or self._deferred is not None
        self._close(_REQUEST_TIMEOUT if started else None)

    def _close(self, answer: bytes | None) -> None:
        if self.transport.is_closing():
            return
        if answer:
            self.transport.write(answer)
        self.transport.close()
