"""Sockets that send nothing, or half a request, neither crowd out valid requests nor stay open for long:
the real `intake serve` process, its production connection settings, thousands of loopback sockets."""

from __future__ import annotations

import asyncio
import json
import resource
import time
import uuid
from collections.abc import Sequence

import httpx

from service.settings import Settings
from tests.support.payloads import headers, submission
from tests.support.servers import ApiProcess

URL = "/v1/businesses/acme/consult-submissions"
DEFAULTS = Settings()
# More idle sockets than the 2048 connections uvicorn's limit_concurrency counted, and all of them
# together still under the default connection cap: what is shown here is the timeouts, not eviction.
IDLE, HALF_HEAD, HALF_BODY, KEPT_ALIVE = 2100, 950, 950, 50
HELD = IDLE + HALF_HEAD + HALF_BODY + KEPT_ALIVE
OPEN_BATCH = 100  # connects in flight at once, well under the listen backlog
PROMPT_S = 2.0  # a valid request answered within this while the sockets are held
SLACK_S = 5.0  # how late after its timeout a held socket may be closed, on a loaded 2-core machine

HALF_HEAD_BYTES = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Never-Finished: abc"
KEEP_ALIVE_REQUEST = b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


def half_body_bytes(key: str) -> bytes:
    """A real submission's full head, promising a body of which only the first bytes are sent."""
    return (f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n"
            "Idempotency-Key: never-finished\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n"
            '{"customer_id": "cus_').encode()


class HeldSocket:
    """One loopback connection that sends `prefix` and then nothing; records when the server closes it."""

    def __init__(self, prefix: bytes) -> None:
        self.prefix = prefix
        self.sent_at = 0.0
        self.closed_at: float | None = None
        self.received = b""
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def open(self, port: int) -> None:
        """Connect and send the prefix."""
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(self.prefix)
        await writer.drain()
        self.sent_at = time.monotonic()
        self._streams = reader, writer

    async def watch(self, deadline: float) -> None:
        """Read until the server closes the connection, or the deadline passes."""
        assert self._streams is not None
        reader, writer = self._streams
        try:
            while chunk := await asyncio.wait_for(reader.read(65536), max(deadline - time.monotonic(), 0)):
                self.received += chunk
            self.closed_at = time.monotonic()
        except ConnectionResetError:
            self.closed_at = time.monotonic()
        except TimeoutError:
            pass
        finally:
            writer.close()


def raise_own_fd_limit(needed: int) -> None:
    """This test process holds thousands of sockets: lift its soft descriptor limit to the hard one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise RuntimeError(f"RLIMIT_NOFILE hard limit {hard} is below the {needed} sockets this test holds")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def open_all(port: int, sockets: Sequence[HeldSocket]) -> None:
    """Open every socket, OPEN_BATCH at a time."""
    for start in range(0, len(sockets), OPEN_BATCH):
        await asyncio.gather(*(s.open(port) for s in sockets[start:start + OPEN_BATCH]))


async def served_promptly(base_url: str, key: str) -> None:
    """Liveness and a real submission answer correctly and within PROMPT_S, on fresh connections."""
    for attempt in range(3):
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            started = time.monotonic()
            live = await client.get("/livez")
            posted = await client.post(URL, json=submission(customer_id=f"cus_held_{attempt}_{uuid.uuid4().hex}"),
                                     headers=headers(key))
            elapsed = time.monotonic() - started
        assert live.status_code == 200, live.text
        assert posted.status_code == 202, posted.text
        assert elapsed < PROMPT_S, f"two requests took {elapsed:.2f}s while sockets were held"


def server_errors(log: str) -> list[str]:
    """The canonical request lines with a 5xx status in the server's JSON log."""
    lines = (json.loads(line) for line in log.splitlines() if line.startswith("{"))
    return [str(line) for line in lines if line.get("event") == "http.request" and line.get("status", 0) >= 500]


async def test_idle_and_half_sent_sockets_do_not_crowd_out_requests_and_are_closed_on_time(
        settings, tenant, tmp_path):
    raise_own_fd_limit(HELD + 256)
    assert HELD < DEFAULTS.http_max_connections
    server = ApiProcess({"DATABASE_URL": settings.database_url}, tmp_path / "api.log")
    server.start()
    groups = {
        "idle": [HeldSocket(b"") for _ in range(IDLE)],
        "half head": [HeldSocket(HALF_HEAD_BYTES) for _ in range(HALF_HEAD)],
        "half body": [HeldSocket(half_body_bytes(tenant.key)) for _ in range(HALF_BODY)],
        "kept alive": [HeldSocket(KEEP_ALIVE_REQUEST) for _ in range(KEPT_ALIVE)],
    }
    timeouts = {"idle": DEFAULTS.http_header_timeout_s, "half head": DEFAULTS.http_header_timeout_s,
                "half body": DEFAULTS.http_body_timeout_s, "kept alive": DEFAULTS.http_keepalive_timeout_s}
    everything = [s for group in groups.values() for s in group]
    try:
        started = time.monotonic()
        await open_all(server.port, everything)
        watching = [asyncio.create_task(s.watch(s.sent_at + max(timeouts.values()) + SLACK_S)) for s in everything]
        assert time.monotonic() - started < DEFAULTS.http_header_timeout_s - PROMPT_S * 3, "opening took too long"

        await served_promptly(server.base_url, tenant.key)
        still_open = sum(s.closed_at is None for s in everything if s.prefix != KEEP_ALIVE_REQUEST)
        assert still_open == HELD - KEPT_ALIVE, "held sockets were closed before their timeout"

        await asyncio.wait_for(asyncio.gather(*watching), timeout=max(timeouts.values()) + SLACK_S * 2)
        for name, group in groups.items():
            lifetimes = [s.closed_at - s.sent_at for s in group if s.closed_at is not None]
            assert len(lifetimes) == len(group), f"{len(group) - len(lifetimes)} {name} sockets were never closed"
            assert min(lifetimes) > timeouts[name] - 0.5, f"a {name} socket was closed early: {min(lifetimes):.2f}s"
            assert max(lifetimes) < timeouts[name] + SLACK_S, f"a {name} socket lived {max(lifetimes):.2f}s"
        assert all(s.received == b"" for s in groups["idle"]), "an idle socket was sent something"
        for name in ("half head", "half body"):
            assert all(s.received.startswith(b"HTTP/1.1 408 ") for s in groups[name]), f"{name}: no 408"
        assert server_errors(server.log_tail(1_000_000)) == []
    finally:
        server.stop()


async def test_at_the_connection_cap_the_longest_idle_sockets_make_room(settings, tenant, tmp_path):
    cap, held = 300, 1200
    raise_own_fd_limit(held + 256)
    server = ApiProcess({"DATABASE_URL": settings.database_url, "HTTP_MAX_CONNECTIONS": str(cap)}, tmp_path / "api.log")
    server.start()
    sockets = [HeldSocket(b"") for _ in range(held)]
    try:
        await open_all(server.port, sockets)
        deadline = time.monotonic() + DEFAULTS.http_header_timeout_s / 2  # evictions, not timeouts
        watching = [asyncio.create_task(s.watch(deadline)) for s in sockets]
        while sum(s.closed_at is not None for s in sockets) < held - cap and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert sum(s.closed_at is not None for s in sockets) >= held - cap, "the server kept more than its cap"

        await served_promptly(server.base_url, tenant.key)
        survivors = [i for i, s in enumerate(sockets) if s.closed_at is None]
        assert len(survivors) <= cap
        assert min(survivors, default=held) >= held - cap - OPEN_BATCH, "a newer socket was closed before an older one"
        for task in watching:
            task.cancel()
        await asyncio.gather(*watching, return_exceptions=True)
    finally:
        server.stop()


async def test_an_oversized_request_head_gets_431_and_is_closed(settings, tmp_path):
    server = ApiProcess({"DATABASE_URL": settings.database_url}, tmp_path / "api.log")
    server.start()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        filler = b"X-Filler: " + b"a" * 1000 + b"\r\n"
        writer.write(b"GET /livez HTTP/1.1\r\nHost: 127.0.0.1\r\n" + filler * (DEFAULTS.http_max_header_bytes // 1000 + 2))
        answer = await asyncio.wait_for(reader.read(), timeout=5)  # read() to EOF: the server closes
        writer.close()
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:80]
    finally:
        server.stop()
