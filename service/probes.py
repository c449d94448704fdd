"""The worker's probe port (WORKER_HEALTH_PORT): GET /livez and /readyz over a few lines of HTTP/1.1.

No web framework: the worker has no other HTTP to serve, and a probe must answer while the loops it
reports on are failing. /livez is 200 while the event loop answers. /readyz is 200 unless a loop is
failing (service/loops.py), with every loop's state in the body either way.
"""

from __future__ import annotations

import asyncio
import json

from service.loops import LoopHealth

READ_TIMEOUT_S = 2.0
MAX_REQUEST_BYTES = 8 * 1024
_REASONS = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}


async def serve_probes(health: LoopHealth, host: str, port: int) -> asyncio.Server:
    """Listen on host:port until the returned server is closed."""
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
            status, body = _route(health, head.split(b" ", 2)[1] if head.count(b" ") >= 2 else b"")
            payload = json.dumps(body).encode()
            writer.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                         b"Connection: close\r\n\r\n%s" % (status, _REASONS[status].encode(), len(payload), payload))
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass  # a client that went away or sent no request: nothing to answer
        finally:
            writer.close()

    return await asyncio.start_server(answer, host, port, limit=MAX_REQUEST_BYTES)


def _route(health: LoopHealth, path: bytes) -> tuple[int, dict[str, object]]:
    if path == b"/livez":
        return 200, {"status": "live"}
    if path == b"/readyz":
        ready = health.ready()
        return (200 if ready else 503), {"status": "ready" if ready else "not ready", "loops": health.report()}
    return 404, {"status": "not found"}
