"""Fixed-rate, open-loop load of reads and submissions, latency per kind: API p99 idle vs during a
rebuild (bench/rebuild.py).

Like bench/open_loop.py (whose raw HTTP/1.1 connection it reuses), requests are released on a
clock, whatever the answers' latency, so a slow service cannot slow the offered load down and
hide its own slowness (coordinated omission). Each kind alternates with the other on every tick.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Callable

import msgspec

from bench.measurement import percentile
from bench.open_loop import BODY, TICK_S, _connect, _Connection

CONNECTIONS = 64
TIMEOUT_S = 10
SLOWEST = 5


class KindResult(msgspec.Struct, kw_only=True):
    """What one kind of request measured in one phase."""

    requests: int = 0
    non2xx: int = 0
    failed: int = 0  # connection errors and timeouts
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    slowest: list[tuple[float, float]] = []  # (seconds into the phase when sent, ms): where the stalls were


class PhaseResult(msgspec.Struct, kw_only=True):
    rate_per_kind: float
    seconds: float = 0.0
    late_ticks: int = 0  # ticks on which no idle connection was left
    reads: KindResult = msgspec.field(default_factory=KindResult)
    submissions: KindResult = msgspec.field(default_factory=KindResult)


class _Load:
    def __init__(self, host: str, port: int, slug: str, api_key: str, consultation_ids: list[str]) -> None:
        self.host, self.port, self.slug, self.api_key = host, port, slug, api_key
        self.ids, self.rng, self.nonce = consultation_ids, random.Random(7), uuid.uuid4().hex[:12]
        self.counter = 0
        self.start = time.monotonic()
        self.latencies: dict[str, list[float]] = {"reads": [], "submissions": []}
        self.slow: dict[str, list[tuple[float, float]]] = {"reads": [], "submissions": []}
        self.non2xx = {"reads": 0, "submissions": 0}
        self.failed = {"reads": 0, "submissions": 0}

    def request(self, kind: str) -> bytes:
        head = f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {self.api_key}\r\n"
        if kind == "reads":
            path = f"/v1/businesses/{self.slug}/consultations/{self.rng.choice(self.ids)}"
            return f"GET {path} HTTP/1.1\r\n{head}\r\n".encode()
        self.counter += 1
        key = f"{self.nonce}-{self.counter}"
        body = BODY.format(key=key).encode()
        return (f"POST /v1/businesses/{self.slug}/consult-submissions HTTP/1.1\r\n{head}"
                f"Content-Type: application/json\r\nIdempotency-Key: {key}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip

    async def send(self, kind: str, idle: asyncio.Queue[_Connection], connection: _Connection) -> None:
        sent = time.monotonic()
        try:
            status, _ = await asyncio.wait_for(connection.post(self.request(kind)), TIMEOUT_S)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            self.failed[kind] += 1
            connection.writer.close()
            idle.put_nowait(await _connect(self.host, self.port))
            return
        latency = time.monotonic() - sent
        self.latencies[kind].append(latency)
        self.slow[kind].append((round(sent - self.start, 1), round(latency * 1000, 1)))
        idle.put_nowait(connection)
        if not 200 <= status < 300:
            self.non2xx[kind] += 1

    def result(self, kind: str) -> KindResult:
        done = self.latencies[kind]
        result = KindResult(requests=len(done) + self.failed[kind], non2xx=self.non2xx[kind], failed=self.failed[kind])
        if done:
            result.p50_ms, result.p99_ms = percentile(done, 50), percentile(done, 99)
            result.max_ms = round(max(done) * 1000, 2)
            result.slowest = sorted(self.slow[kind], key=lambda sample: -sample[1])[:SLOWEST]
        return result


async def run_phase(*, host: str, port: int, slug: str, api_key: str, consultation_ids: list[str],
                    rate_per_kind: float, until: Callable[[float], bool], max_s: float) -> PhaseResult:
    """Offer `rate_per_kind` reads/s and as many submissions/s until `until(elapsed)` or `max_s`."""
    load = _Load(host, port, slug, api_key, consultation_ids)
    phase = PhaseResult(rate_per_kind=rate_per_kind)
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for connection in await asyncio.gather(*(_connect(host, port) for _ in range(CONNECTIONS))):
        idle.put_nowait(connection)
    tasks: set[asyncio.Task] = set()
    start, released = load.start, 0
    try:
        while not until(elapsed := time.monotonic() - start) and elapsed < max_s:
            for _ in range(int(elapsed * rate_per_kind * 2) - released):
                if idle.empty():
                    phase.late_ticks += 1
                    break
                task = asyncio.create_task(load.send(("reads", "submissions")[released % 2], idle, idle.get_nowait()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                released += 1
            await asyncio.sleep(TICK_S)
        phase.seconds = round(time.monotonic() - start, 2)
        await asyncio.gather(*tasks)
    finally:
        while not idle.empty():
            idle.get_nowait().writer.close()
    phase.reads, phase.submissions = load.result("reads"), load.result("submissions")
    return phase
