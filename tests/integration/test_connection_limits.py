"""The guarded protocol (service/connections.py) on raw loopback sockets: well-behaved HTTP/1.1 still works
(keep-alive, pipelining, bodies in pieces, Expect: 100-continue), and a client that dribbles its head
is cut off at the header deadline however steadily it dribbles."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from urllib.parse import urlsplit

from service.settings import Settings
from tests.support.payloads import submission
from tests.support.servers import running_api

TIMEOUT_S = 1
URL = "/v1/businesses/acme/consult-submissions"


def quick(settings: Settings) -> Settings:
    """Short deadlines, so that a test sees them pass."""
    return dataclasses.replace(settings, http_header_timeout_s=TIMEOUT_S, http_body_timeout_s=TIMEOUT_S,
                               http_keepalive_timeout_s=TIMEOUT_S)


async def exchange(base_url: str, pieces: list[bytes], pause: float = 0.0, wait: float = 5.0) -> bytes:
    """Send the pieces `pause` apart, then read until the server closes (or `wait` passes); what came back."""
    port = urlsplit(base_url).port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for piece in pieces:
            writer.write(piece)
            await writer.drain()
            await asyncio.sleep(pause)  # the pacing under test, not a wait for a result
        return await asyncio.wait_for(reader.read(), timeout=wait)
    finally:
        writer.close()


def post(key: str, idem: str, *, expect_continue: bool = False) -> tuple[bytes, bytes]:
    """A real submission: its head and its body."""
    body = json.dumps(submission(customer_id=f"cus_{idem}")).encode()
    head = (f"POST {URL} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nIdempotency-Key: {idem}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            + ("Expect: 100-continue\r\n" if expect_continue else "") + "\r\n").encode()
    return head, body


LIVEZ = b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n"


async def test_keep_alive_pipelining_split_bodies_and_expect_continue_still_work(settings, tenant):
    async with running_api(quick(settings)) as base_url:
        head, body = post(tenant.key, "pipelined-1")
        answer = await exchange(base_url, [LIVEZ + head + body + LIVEZ])
        assert answer.count(b"HTTP/1.1 200 OK") == 2 and answer.count(b"HTTP/1.1 202 Accepted") == 1

        answer = await exchange(base_url, [LIVEZ, LIVEZ], pause=TIMEOUT_S / 3)  # kept alive between the two
        assert answer.count(b"HTTP/1.1 200 OK") == 2

        head, body = post(tenant.key, "split-body")
        answer = await exchange(base_url, [head, body[:10], body[10:]], pause=TIMEOUT_S / 3)
        assert answer.startswith(b"HTTP/1.1 202 ")

        head, body = post(tenant.key, "expect-continue", expect_continue=True)
        answer = await exchange(base_url, [head, body], pause=TIMEOUT_S / 3)
        assert answer.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 202 ")


async def test_a_head_dribbled_byte_by_byte_is_cut_off_at_the_header_deadline(settings):
    async with running_api(quick(settings)) as base_url:
        reader, writer = await asyncio.open_connection("127.0.0.1", urlsplit(base_url).port)
        started = time.monotonic()
        answer = asyncio.create_task(reader.read())  # to EOF: until the server closes
        try:
            for byte in b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100:
                if answer.done():
                    break
                writer.write(bytes([byte]))
                await asyncio.sleep(TIMEOUT_S / 5)  # the dribble under test, not a wait for a result
            received = await asyncio.wait_for(answer, timeout=TIMEOUT_S * 3)
        finally:
            writer.close()
        elapsed = time.monotonic() - started
        assert received == b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        assert TIMEOUT_S - 0.2 < elapsed < TIMEOUT_S * 3, f"cut off after {elapsed:.2f}s"


CLOSE = b"Connection: close\r\n"


async def held_and_refused(base: str, key: str, attempt: int) -> tuple[bytes, bytes]:
    """Hold a submission in the app and probe /livez until the cap refuses it: (probe answer, held answer).

    The probes take the one slot too while they run, so the held request itself may be the refused one:
    then the held answer is a 503 and the caller tries again."""
    head, body = post(key, f"held-{attempt}")
    reader, writer = await asyncio.open_connection("127.0.0.1", urlsplit(base).port)
    writer.write(head.replace(b"Host: x\r\n", b"Host: x\r\n" + CLOSE) + body)
    await writer.drain()
    held = asyncio.create_task(asyncio.wait_for(reader.read(), timeout=5))
    deadline = time.monotonic() + 5
    probe = LIVEZ.replace(b"\r\n\r\n", b"\r\n" + CLOSE + b"\r\n")
    while (answer := await exchange(base, [probe])).startswith(b"HTTP/1.1 200") and not held.done():
        assert time.monotonic() < deadline, "no probe was refused while a request was held"
        await asyncio.sleep(0.02)  # pacing: the held request sleeps 1.5 s in the app
    try:
        return answer, await held
    finally:
        writer.close()


async def test_beyond_the_in_flight_cap_the_answer_is_a_problem_with_retry_after(settings, tenant):
    """One request held in the app (a drill delay before its append) fills a cap of one: the next is
    refused at once as problem+json, and the server serves again once the held one is done."""
    held_settings = dataclasses.replace(settings, http_max_in_flight=1, faults="request.before_append=delay:1500")
    async with running_api(held_settings) as base:
        for attempt in range(5):
            answer, held = await held_and_refused(base, tenant.key, attempt)
            if held.startswith(b"HTTP/1.1 202"):
                break
        assert held.startswith(b"HTTP/1.1 202"), held[:200]
        head_part, _, problem = answer.partition(b"\r\n\r\n")
        assert head_part.startswith(b"HTTP/1.1 503"), answer[:200]
        assert b"content-type: application/problem+json" in head_part.lower()
        assert b"retry-after: 1" in head_part.lower()
        assert b"x-request-id: " in head_part.lower()
        assert json.loads(problem)["type"] == "https://intake.dev/problems/over-capacity"
        assert (await exchange(base, [LIVEZ.replace(b"\r\n\r\n", b"\r\n" + CLOSE + b"\r\n")])
                ).startswith(b"HTTP/1.1 200")
