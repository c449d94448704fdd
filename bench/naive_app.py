"""Two baseline apps on the submission route, to frame the real service's figures.

`create_ceiling_app` decodes the body and answers 202 without touching a database:
the most this framework + server can do on this machine. `create_naive_app` adds the
least a durable write needs: one plain transaction with the event row and its outbox
row. Neither checks keys, loads streams or replays idempotency: that is the point.

Both are uvicorn factories (`--factory`) so nothing connects at import time.
"""

from __future__ import annotations

import hashlib
import os
import uuid

import asyncpg
import msgspec
from litestar import Litestar, Request, post

ROUTE = "/v1/businesses/{slug:str}/consult-submissions"
# One business row is implied; the naive app does no lookup, so any constant will do.
BUSINESS_ID = 1
DEFAULT_POOL_SIZE = 32  # per worker; the harness passes BENCH_POOL_SIZE to split a fixed total

INSERT_EVENT = """
INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version,
                    business_id, idempotency_key, request_fingerprint, payload, metadata)
VALUES ($1, $2, 1, 'consult.submitted.v1', 1, $3, $4, $5, $6::jsonb, $7::jsonb)
RETURNING position
"""
INSERT_OUTBOX = "INSERT INTO outbox (position, stream_id) VALUES ($1, $2)"


class Patient(msgspec.Struct, frozen=True):
    first_name: str
    last_name: str
    email: str
    phone: str
    date_of_birth: str


class Answer(msgspec.Struct, frozen=True):
    question_id: str
    answer: str


class Submission(msgspec.Struct, frozen=True):
    customer_id: str
    product_id: str
    patient: Patient
    chief_complaint: str
    medical_history: str
    answers: list[Answer]


class Accepted(msgspec.Struct, frozen=True):
    submission_id: str
    status: str = "accepted"


_decode_submission = msgspec.json.Decoder(Submission).decode
_encode = msgspec.json.Encoder().encode


@post(ROUTE, status_code=202)
async def submit_without_database(request: Request, slug: str) -> Accepted:
    """Decode and acknowledge: the framework's ceiling."""
    _decode_submission(await request.body())
    return Accepted(submission_id=str(uuid.uuid4()))


@post(ROUTE, status_code=202)
async def submit_naively(request: Request, slug: str) -> Accepted:
    """Decode, then write event + outbox in one plain transaction."""
    raw = await request.body()
    submission = _decode_submission(raw)
    event_id = uuid.uuid4()
    stream_id = f"consult-{submission.customer_id}"
    metadata = _encode({"request_id": str(uuid.uuid4())}).decode()
    pool: asyncpg.Pool = request.app.state.pool
    async with pool.acquire() as conn, conn.transaction():
        position = await conn.fetchval(
            INSERT_EVENT,
            event_id,
            stream_id,
            BUSINESS_ID,
            request.headers.get("idempotency-key"),
            hashlib.sha256(raw).digest(),
            _encode(submission).decode(),
            metadata,
        )
        await conn.execute(INSERT_OUTBOX, position, stream_id)
    return Accepted(submission_id=str(event_id))


async def _open_pool(app: Litestar) -> None:
    size = int(os.environ.get("BENCH_POOL_SIZE", DEFAULT_POOL_SIZE))
    app.state.pool = await asyncpg.create_pool(os.environ["DATABASE_URL"], min_size=size, max_size=size)


async def _close_pool(app: Litestar) -> None:
    await app.state.pool.close()


def create_ceiling_app() -> Litestar:
    """Framework ceiling: same route and decoding, no database."""
    return Litestar([submit_without_database], openapi_config=None)


def create_naive_app() -> Litestar:
    """Naive endpoint: same route, one transaction, two INSERTs."""
    return Litestar(
        [submit_naively],
        on_startup=[_open_pool],
        on_shutdown=[_close_pool],
        openapi_config=None,
    )
