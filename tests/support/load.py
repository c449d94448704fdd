"""A bounded load of submissions and decisions, from concurrent clients, against an API on loopback.

The plan is fixed by a seed, so a failing run can be replayed; the load stops at its budget,
sent or not, and refuses any address but loopback.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import ipaddress
import random
import time
import urllib.parse
from typing import Any

import httpx

from tests.support.payloads import VALID_SUBMISSION, headers, submission

SUBMIT = "/v1/businesses/acme/consult-submissions"
DECIDE = "/v1/businesses/acme/consultations/{}/decision"


@dataclasses.dataclass(frozen=True)
class LoadPlan:
    """How much to send, from how many clients, over how many slots, within what time."""

    submissions: int
    decisions: int
    clients: int
    customers: int
    products: int
    race_size: int  # decisions sent at once on one consultation, with different keys
    races: int
    stale_share: float  # share of single decisions aimed at a consultation this run already decided
    warm_up: int  # the first tickets are submissions, so that decisions find consultations to decide
    budget_s: float  # the clients stop here even if unfinished
    seed: int


class Load:
    """The clients' shared plan of tickets, and everything the API answered."""

    def __init__(self, plan: LoadPlan, key: str) -> None:
        self.plan = plan
        self._key = key
        self._rng = random.Random(plan.seed)
        self._tickets = self._shuffled_tickets()
        self._deadline = 0.0
        self.statuses: collections.Counter[tuple[str, int]] = collections.Counter()
        self.server_errors: collections.Counter[tuple[str, int, str]] = collections.Counter()
        self.transport_errors: collections.Counter[str] = collections.Counter()
        self.acknowledged: list[tuple[str, str]] = []  # (submission_id, consultation_id) of every 2xx submission
        self.pending: list[str] = []  # consultations this run opened and has not decided yet
        self.decided: dict[str, str] = {}  # consultation → the verdict of its 200
        self.wins: collections.Counter[str] = collections.Counter()  # consultation → 200s to a decision
        self.submitted = 0
        self.halfway = asyncio.Event()

    def _shuffled_tickets(self) -> collections.deque[str]:
        plan = self.plan
        rest = (["submit"] * (plan.submissions - plan.warm_up) + ["race"] * plan.races
                + ["decide"] * (plan.decisions - plan.races * plan.race_size))
        self._rng.shuffle(rest)
        return collections.deque(["submit"] * plan.warm_up + rest)

    @property
    def unsent(self) -> int:
        """Tickets left when the budget ran out."""
        return len(self._tickets)

    async def run(self, base_url: str) -> None:
        """Send every ticket from `plan.clients` concurrent clients, within `plan.budget_s`."""
        host = urllib.parse.urlsplit(base_url).hostname or ""
        assert host == "localhost" or ipaddress.ip_address(host).is_loopback, f"load only loopback, not {host}"
        self._deadline = time.monotonic() + self.plan.budget_s
        try:
            # Idle connections expire on the client first: httpx's default (5 s) equals the server's
            # HTTP_KEEPALIVE_TIMEOUT_S, and a request sent on a connection the server is closing at
            # that moment gets no answer (a ReadError) through no fault of the server.
            limits = httpx.Limits(keepalive_expiry=2.0)
            async with httpx.AsyncClient(base_url=base_url, timeout=10, limits=limits) as http, \
                    asyncio.TaskGroup() as clients:
                for _ in range(self.plan.clients):
                    clients.create_task(self._client(http))
        finally:
            self.halfway.set()  # a load that ends early must not leave a fault waiting for half of it

    async def _client(self, http: httpx.AsyncClient) -> None:
        while self._tickets and time.monotonic() < self._deadline:
            ticket = self._tickets.popleft()
            if ticket == "submit":
                await self._submit(http)
            else:
                await self._decide(http, self.plan.race_size if ticket == "race" else 1)

    async def _submit(self, http: httpx.AsyncClient) -> None:
        self.submitted += 1
        if self.submitted == self.plan.submissions // 2:
            self.halfway.set()
        patient = {**VALID_SUBMISSION["patient"], "email": f"p{self.submitted}@example.com"}
        body = submission(customer_id=f"cus_{self._rng.randrange(self.plan.customers)}",
                          product_id=f"prod_{self._rng.randrange(self.plan.products)}", patient=patient)
        response = await self._send(http, "submit", SUBMIT, body)
        if response is not None and response.status_code in (200, 202):
            answer = response.json()
            self.acknowledged.append((answer["submission_id"], answer["consultation_id"]))
            if response.status_code == 202:
                self.pending.append(answer["consultation_id"])

    async def _decide(self, http: httpx.AsyncClient, size: int) -> None:
        if size == 1 and self.decided and self._rng.random() < self.plan.stale_share:
            target = self._rng.choice(list(self.decided))
        else:
            assert self.pending, "no pending consultation left to decide: the plan is off"
            target = self.pending.pop(self._rng.randrange(len(self.pending)))
        bodies = [{"decision": self._rng.choice(("approved", "rejected")), "reason": "chaos",
                   "clinician_id": f"clin_{n}"} for n in range(size)]
        responses = await asyncio.gather(*(self._send(http, "decide", DECIDE.format(target), body)
                                           for body in bodies))
        for response in responses:
            if response is not None and response.status_code == 200:
                self.wins[target] += 1
                self.decided[target] = response.json()["status"]

    async def _send(self, http: httpx.AsyncClient, operation: str, url: str,
                    body: dict[str, Any]) -> httpx.Response | None:
        try:
            response = await http.post(url, json=body, headers=headers(self._key))
        except httpx.HTTPError as error:
            self.transport_errors[type(error).__name__] += 1
            return None
        self.statuses[operation, response.status_code] += 1
        if response.status_code >= 500:
            problem = response.json().get("type", "?") if "json" in response.headers.get("content-type", "") else "?"
            self.server_errors[operation, response.status_code, problem] += 1
        return response
