"""Projection lag under a steady, open-loop submission rate.

A sender posts fresh submissions at a fixed rate (whatever the answers' latency:
open loop, so a slow service cannot slow the offered load down) over keep-alive
connections; for each 2xx it notes when the answer arrived and the event's log
position. A watcher asks PostgreSQL every WATCH_INTERVAL_S which of those events
every projection has applied (their checkpoints commit with their rows, so that is
the moment they became readable). Lag = seen - answered: an upper bound, too high by
at most one watch interval plus one query.

The client is a few lines of raw HTTP/1.1 on asyncio streams rather than an HTTP
library: it must offer ~1,500 req/s from one Python process on a 2-core machine that
also runs the service, its workers and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence

import asyncpg
import msgspec

from bench.measurement import percentile

WATCH_INTERVAL_S = 0.01
TICK_S = 0.005  # the sender releases the requests due every tick
CONNECTIONS = 256  # enough that the offered rate never waits for a free connection
DRAIN_TIMEOUT_S = 60.0
BODY = (
    '{{"customer_id": "cus_{key}", "product_id": "prod_abc", '
    '"patient": {{"first_name": "Ada", "last_name": "Lovelace", "email": "ada@example.com", '
    '"phone": "+15555550100", "date_of_birth": "1990-12-10"}}, '
    '"chief_complaint": "Persistent cough for two weeks", "medical_history": "None", '
    '"answers": [{{"question_id": "q1", "answer": "yes"}}]}}'
)
# Applied by every projection: the stream's three checkpoints have reached the event.
SEEN_SQL = """
SELECT e.position
FROM events e
WHERE e.position = ANY($1::bigint[])
  AND (SELECT count(*) FROM projection_checkpoints c
       WHERE c.projection = ANY($2::text[]) AND c.stream_id = e.stream_id
         AND c.version >= e.stream_version) = cardinality($2::text[])
"""


class Accepted(msgspec.Struct):
    position: int


class LagResult(msgspec.Struct, kw_only=True):
    """What one steady-rate run measured."""

    target_rps: float
    offered: int = 0  # requests sent in the measured window
    achieved_rps: float = 0.0  # 2xx answers per second in the measured window
    non2xx: int = 0
    failed: int = 0  # connection errors and timeouts
    late_ticks: int = 0  # ticks on which no idle connection was left (offered load fell behind)
    samples: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    answer_p50_ms: float = 0.0
    answer_p99_ms: float = 0.0
    unseen: int = 0  # acknowledged events no projection had applied DRAIN_TIMEOUT_S after the load
    generator_cpu: float = 0.0  # CPU seconds per second the load generator itself used (1.0 = one core)


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def post(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)


class _Run:
    def __init__(self, host: str, port: int, path: str, api_key: str, rate: float) -> None:
        self.host, self.port, self.path, self.api_key, self.rate = host, port, path, api_key, rate
        self.nonce = uuid.uuid4().hex[:12]
        self.counter = 0
        self.recording = False
        self.pending: dict[int, float] = {}  # position -> when its 2xx arrived (recorded requests only)
        self.lags: list[float] = []
        self.answers: list[float] = []
        self.result = LagResult(target_rps=rate)

    def request(self) -> bytes:
        self.counter += 1
        body = BODY.format(key=f"{self.nonce}-{self.counter}").encode()
        return (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {self.api_key}\r\nContent-Type: application/json\r\n"
            f"Idempotency-Key: {self.nonce}-{self.counter}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    async def send(self, idle: asyncio.Queue[_Connection], connection: _Connection) -> None:
        recording, sent = self.recording, time.monotonic()
        if recording:
            self.result.offered += 1
        try:
            status, body = await asyncio.wait_for(connection.post(self.request()), 10)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            self.result.failed += recording
            connection.writer.close()
            idle.put_nowait(await _connect(self.host, self.port))
            return
        answered = time.monotonic()
        idle.put_nowait(connection)
        if not recording:
            return
        if 200 <= status < 300:
            self.pending[msgspec.json.decode(body, type=Accepted).position] = answered
            self.answers.append(answered - sent)
        else:
            self.result.non2xx += 1

    async def offer(self, seconds: float, idle: asyncio.Queue[_Connection], tasks: set[asyncio.Task]) -> None:
        """Send `rate` requests per second for `seconds`, due ones released every tick."""
        start = time.monotonic()
        released = 0
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * self.rate) - released
            for _ in range(due):
                if idle.empty():
                    self.result.late_ticks += self.recording
                    break
                task = asyncio.create_task(self.send(idle, idle.get_nowait()))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                released += 1
            await asyncio.sleep(TICK_S)

    async def watch(self, conn: asyncpg.Connection, projections: Sequence[str], stop: asyncio.Event) -> None:
        while not (stop.is_set() and not self.pending):
            if self.pending:
                rows = await conn.fetch(SEEN_SQL, list(self.pending), list(projections))
                seen = time.monotonic()
                for row in rows:
                    self.lags.append(seen - self.pending.pop(row["position"]))
            await asyncio.sleep(WATCH_INTERVAL_S)


async def _connect(host: str, port: int) -> _Connection:
    return _Connection(*await asyncio.open_connection(host, port))


async def measure_lag(
    *, host: str, port: int, path: str, api_key: str, database_url: str, projections: Sequence[str],
    rate: float, warmup_s: float, duration_s: float,
) -> LagResult:  # fmt: skip
    """Offer `rate` submissions/s for warm-up + duration; lag percentiles over the measured part."""
    run = _Run(host, port, path, api_key, rate)
    cpu_before, wall_before = time.process_time(), time.monotonic()
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for connection in await asyncio.gather(*(_connect(host, port) for _ in range(CONNECTIONS))):
        idle.put_nowait(connection)
    tasks: set[asyncio.Task] = set()
    stop = asyncio.Event()
    conn = await asyncpg.connect(database_url)
    watcher = asyncio.create_task(run.watch(conn, projections, stop))
    try:
        await run.offer(warmup_s, idle, tasks)
        run.recording = True
        await run.offer(duration_s, idle, tasks)
        run.recording = False
        await asyncio.gather(*tasks)
        stop.set()
        try:
            await asyncio.wait_for(asyncio.shield(watcher), DRAIN_TIMEOUT_S)
        except TimeoutError:
            run.result.unseen = len(run.pending)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await conn.close()
        while not idle.empty():
            idle.get_nowait().writer.close()
    result = run.result
    result.generator_cpu = round((time.process_time() - cpu_before) / (time.monotonic() - wall_before), 2)
    result.achieved_rps = round(len(run.answers) / duration_s, 1)
    result.samples = len(run.lags)
    if run.lags:
        result.p50_ms, result.p99_ms = percentile(run.lags, 50), percentile(run.lags, 99)
        result.max_ms = round(max(run.lags) * 1000, 2)
    if run.answers:
        result.answer_p50_ms, result.answer_p99_ms = percentile(run.answers, 50), percentile(run.answers, 99)
    return result
