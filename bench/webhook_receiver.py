"""The webhook benchmark's partner: a receiver in a process of its own (`python -m bench.webhook_receiver
PORT`), answering 200 at once and noting each webhook-id's first arrival (time.time() when its handler
runs). A partner runs on its own machine; here it at least gets its own process, so the load generator
and the stage watcher in the bench's process cannot delay the arrival stamps (bench/webhooks.py).

GET /count answers how many distinct webhook-ids arrived; GET /arrivals, the JSON object id → time.
"""

from __future__ import annotations

import asyncio
import sys
import time
import urllib.request

import msgspec
import uvicorn

ASK_TIMEOUT_S = 30


class Receiver:
    """The ASGI app."""

    def __init__(self) -> None:
        self.arrivals: dict[str, float] = {}

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001  (ASGI)
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if scope["method"] == "GET":
            answer = len(self.arrivals) if scope["path"] == "/count" else self.arrivals
            body = msgspec.json.encode(answer)
        else:
            webhook_id = dict(scope["headers"]).get(b"webhook-id", b"").decode()
            self.arrivals.setdefault(webhook_id, time.time())
            body = b""
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


def argv(port: int) -> list[str]:
    return [sys.executable, "-m", "bench.webhook_receiver", str(port)]


class RemoteArrivals:
    """The bench's side: what the receiver on `port` has seen so far."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    async def count(self) -> int:
        return msgspec.json.decode(await asyncio.to_thread(self._get, "/count"), type=int)

    async def arrivals(self) -> dict[str, float]:
        return msgspec.json.decode(await asyncio.to_thread(self._get, "/arrivals"), type=dict[str, float])

    def _get(self, path: str) -> bytes:
        with urllib.request.urlopen(self.base + path, timeout=ASK_TIMEOUT_S) as answer:  # noqa: S310 (loopback)
            return answer.read()


if __name__ == "__main__":
    uvicorn.run(Receiver(), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning", lifespan="off",
                access_log=False)
