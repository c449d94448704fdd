"""A real webhook receiver for the tests: an ASGI app behind uvicorn on 127.0.0.1, recording every
request it gets and answering as the test scripts it (fail n times, always fail, hang)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import uvicorn

from service.devstack import free_port
from tests.support.servers import _QuietServer

READY_TIMEOUT = 10.0


@dataclasses.dataclass(frozen=True)
class Received:
    """One request the receiver got."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # time.time() when it arrived

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """Records requests; `answer(path, nth)` says what the nth request to a path gets (status, or None: hang)."""

    def __init__(self, answer: Callable[[str, int], int | None] = lambda path, nth: 200, *,
                 delay_s: float = 0.0) -> None:
        self.answer = answer
        self.delay_s = delay_s  # how long each answer takes, so that a test can kill a sender mid-request
        self.received: list[Received] = []
        self.url = ""

    def to(self, path: str) -> list[Received]:
        """The requests that came to one path."""
        return [r for r in self.received if r.path == path]

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        nth = len(self.to(path)) + 1
        self.received.append(Received(path, headers, body, time.time()))
        status = self.answer(path, nth)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)  # the receiver's own pace, not a test waiting for something
        if status is None:  # hang until the client gives up
            await asyncio.Event().wait()
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[Receiver]:
    """The receiver served on a loopback port for as long as the block runs; its base URL in `.url`."""
    port = free_port()
    server = _QuietServer(uvicorn.Config(receiver, host="127.0.0.1", port=port, log_level="warning",
                                         lifespan="off", timeout_graceful_shutdown=1))
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + READY_TIMEOUT
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("the receiver did not start")
        await asyncio.sleep(0.01)
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        server.should_exit = True
        server.force_exit = True
        await asyncio.wait_for(task, timeout=15)
