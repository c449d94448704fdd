"""`intake loadtest`: prove against any deployment that duplicates never become duplicate events.

A run sends `total` submissions of which `unique` are distinct: every duplicate reuses its
original's Idempotency-Key and body, and the plan is shuffled so duplicates race their originals.
Each distinct submission has its own customer (`lt-<run>-<n>`), so the verdict can be checked
through the API afterwards: exactly `unique` consultations exist for the run. Loopback or a
staging deployment only: the run is bounded by `total` and by a per-request timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from rich.console import Console

CREATED, REPLAYED, OTHER = "created", "replayed", "other"
CHECK_ATTEMPTS = 10


@dataclass(frozen=True, slots=True)
class Plan:
    """What to send: `order` indexes into `requests`, each distinct request at least once."""

    run_id: str
    requests: list[tuple[str, dict[str, object]]]  # (idempotency key, body)
    order: list[int]


def make_plan(total: int, unique: int, *, rng: random.Random) -> Plan:
    """`unique` distinct submissions, `total - unique` duplicates of them, shuffled."""
    if not 1 <= unique <= total:
        raise ValueError("--unique must be from 1 to --total")
    run_id = uuid.UUID(int=rng.getrandbits(128)).hex[:12]
    requests = [(f"lt-{run_id}-{n}", _body(f"lt-{run_id}-{n}")) for n in range(unique)]
    order = list(range(unique)) + [rng.randrange(unique) for _ in range(total - unique)]
    rng.shuffle(order)
    return Plan(run_id, requests, order)


def _body(customer_id: str) -> dict[str, object]:
    return {"customer_id": customer_id, "product_id": "loadtest",
            "patient": {"first_name": "Load", "last_name": "Test", "email": "loadtest@example.com",
                        "date_of_birth": "1990-01-01"},
            "chief_complaint": "Synthetic load-test submission"}


def classify(response: httpx.Response | None) -> str:
    """created: a new event (2xx, not a replay); replayed: the first answer repeated; other: anything else."""
    if response is None or response.status_code not in (200, 202):
        return OTHER
    return REPLAYED if response.headers.get("idempotent-replayed") == "true" else CREATED


async def send_all(client: httpx.AsyncClient, plan: Plan, *, business: str, concurrency: int,
                   on_done: Callable[[], None]) -> tuple[Counter[str], list[float], list[int]]:
    """Send the plan with at most `concurrency` requests in flight: outcomes, latencies (ms), positions."""
    outcomes: Counter[str] = Counter()
    latencies: list[float] = []
    positions: list[int] = []
    url = f"/v1/businesses/{business}/consult-submissions"
    pending = iter(plan.order)  # `concurrency` senders share it: memory stays flat whatever --total is

    async def sender() -> None:
        for index in pending:
            key, body = plan.requests[index]
            started = time.perf_counter()
            try:
                response: httpx.Response | None = await client.post(url, json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError:
                response = None
            latencies.append((time.perf_counter() - started) * 1000)
            outcomes[classify(response)] += 1
            if response is not None and response.status_code in (200, 202):
                positions.append(response.json()["position"])
            on_done()

    await asyncio.gather(*(sender() for _ in range(concurrency)))
    return outcomes, latencies, positions


async def count_consultations(client: httpx.AsyncClient, plan: Plan, *, business: str, concurrency: int,
                              min_position: int) -> int:
    """How many consultations the run's customers have, read once the projections reached the run's writes."""
    gate = asyncio.Semaphore(concurrency)

    async def of(customer_id: str) -> int:
        for _ in range(CHECK_ATTEMPTS):  # a 503 means the projectors are behind: they said when to ask again
            async with gate:
                response = await client.get(f"/v1/businesses/{business}/consultations",
                                            params={"customer_id": customer_id, "min_position": min_position})
            if response.status_code != 503:
                break
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        response.raise_for_status()
        return len(response.json()["items"])

    return sum(await asyncio.gather(*(of(key) for key, _ in plan.requests)))


def verdict(plan: Plan, outcomes: Counter[str], latencies: list[float]) -> dict[str, object]:
    """The JSON the command prints."""
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else 0.0
    return {"run": plan.run_id, "total": len(plan.order), "unique": len(plan.requests),
            "created": outcomes[CREATED], "replayed": outcomes[REPLAYED], "other": outcomes[OTHER],
            "latency_ms": {"p50": round(statistics.median(ordered), 2) if ordered else 0.0, "p99": round(p99, 2)}}


async def run(*, base_url: str, key: str, business: str, total: int, unique: int, concurrency: int,
              timeout_s: float, check: bool, seed: int | None, on_done: Callable[[], None]) -> tuple[dict, int]:
    """Send the plan (and check it with --check); the verdict and the exit code: 2 if any answer was
    neither created nor replayed, 1 if the check found other than `unique` consultations, else 0."""
    plan = make_plan(total, unique, rng=random.Random(seed))
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=timeout_s, limits=limits) as client:
        outcomes, latencies, positions = await send_all(client, plan, business=business, concurrency=concurrency,
                                                        on_done=on_done)
        result = verdict(plan, outcomes, latencies)
        if result["other"]:
            return result, 2
        if check:
            found = await count_consultations(client, plan, business=business, concurrency=concurrency,
                                              min_position=max(positions, default=0))
            result["consultations"] = found
            return result, 0 if found == unique else 1
    return result, 0


def print_verdict(result: dict[str, object]) -> None:
    """One JSON line on stdout, for people and CI alike."""
    sys.stdout.write(json.dumps(result) + "\n")


async def run_command(args: object) -> int:
    """`intake loadtest`: a progress bar on a terminal (stderr), the verdict as JSON on stdout."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    options = vars(args)
    key = options["key"] or os.environ.get("INTAKE_API_KEY")
    if not key:
        raise ValueError("give --key or set INTAKE_API_KEY (a key with submissions:write, and consultations:read "
                         "for --check)")
    progress = Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                        TimeRemainingColumn(), console=Console(stderr=True), disable=not sys.stderr.isatty())
    with progress:
        task = progress.add_task("loadtest", total=options["total"])
        result, code = await run(base_url=options["base_url"], key=key, business=options["business"],
                                 total=options["total"], unique=options["unique"],
                                 concurrency=options["concurrency"], timeout_s=options["timeout"],
                                 check=options["check"], seed=options["seed"],
                                 on_done=lambda: progress.advance(task))
    print_verdict(result)
    return code
