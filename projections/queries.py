"""Read-model queries for the read API: one business at a time, keyset-paginated.

Each list walks an index in the order it returns (sql/queries/reads.sql), fetching
one row more than asked to learn whether another page follows. Functions take the
pool and return views; the HTTP layer turns keys into opaque cursors.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import asyncpg
import msgspec

from events.errors import translating_driver_errors
from events.sqlfiles import queries

V = TypeVar("V")
Key = tuple[object, ...]
NIL = uuid.UUID(int=0)  # sorts before every id: the keyset start of a first page
FIRST_BY_POSITION: Key = (0, NIL)
FIRST_BY_PATIENT: Key = (NIL,)


class Decision(msgspec.Struct, frozen=True):
    """How a consultation was decided."""

    decision: str
    reason: str | None
    clinician_id: str | None


class Consent(msgspec.Struct, frozen=True):
    """The telehealth consent accepted with the submission."""

    document_version: str
    accepted_at: dt.datetime


class PartnerStatus(msgspec.Struct, frozen=True):
    """The latest status a partner reported for the consultation, and when (its signed time)."""

    partner: str
    status: str
    reported_at: dt.datetime


class ConsultationView(msgspec.Struct, frozen=True):
    """A consultation as the API shows it."""

    consultation_id: uuid.UUID
    submission_id: uuid.UUID
    patient_id: uuid.UUID
    customer_id: str
    product_id: str
    status: str
    submitted_at: dt.datetime
    decided_at: dt.datetime | None
    decision: Decision | None
    version: int
    consent: Consent | None  # null for submissions without one, and for every one made before consent existed
    partner_status: PartnerStatus | None = None  # null until a partner reports (POST …/partners/{p}/callbacks)


class PatientView(msgspec.Struct, frozen=True):
    """A patient, with the details of their latest submission; once forgotten (`erased`), names and
    email read "[erased]" and the date of birth null."""

    patient_id: uuid.UUID
    customer_id: str
    first_name: str
    last_name: str
    email: str
    phone: str | None
    date_of_birth: dt.date | None
    updated_at: dt.datetime
    erased: bool


class ApprovalView(msgspec.Struct, frozen=True):
    """An entry of the clinicians' queue."""

    consultation_id: uuid.UUID
    customer_id: str
    product_id: str
    status: str
    requested_at: dt.datetime
    decided_at: dt.datetime | None
    clinician_id: str | None


@dataclass(frozen=True, slots=True)
class Page(Generic[V]):
    """Up to `limit` items, and the sort key of the last one if another page follows."""

    items: list[V]
    next_key: Key | None


class ReadModels:
    """The read API's queries over a pool; every wait is bounded."""

    def __init__(self, pool: asyncpg.Pool, *, acquire_timeout: float) -> None:
        self._pool = pool
        self._acquire_timeout = acquire_timeout
        self._sql = queries("reads")

    async def consultation(self, business_id: int, consultation_id: uuid.UUID) -> ConsultationView | None:
        """One consultation of this business, if it has it."""
        rows = await self._fetch("consultation", business_id, consultation_id)
        return consultation_view(rows[0]) if rows else None

    async def consultations(self, business_id: int, *, after: Key, limit: int, status: str | None,
                            customer_id: str | None) -> Page[ConsultationView]:
        """Consultations in submission order, optionally of one status and/or customer."""
        args = [business_id, *after, status, limit + 1]
        # A query per filter shape, each walking its own index (reads.sql: consultations).
        in_status = "" if status is None else "_in_status"
        rows = await (self._fetch("consultations" + in_status, *args) if customer_id is None
                      else self._fetch("consultations_of_customer" + in_status, *args, customer_id))
        return _page(rows, limit, consultation_view, lambda r: (r["position"], r["consultation_id"]))

    async def patient(self, business_id: int, patient_id: uuid.UUID) -> PatientView | None:
        """One patient of this business, if it has them."""
        rows = await self._fetch("patient", business_id, patient_id)
        return PatientView(**dict(rows[0])) if rows else None

    async def patients(self, business_id: int, *, after: Key, limit: int) -> Page[PatientView]:
        """Patients in patient_id order."""
        rows = await self._fetch("patients", business_id, *after, limit + 1)
        return _page(rows, limit, lambda r: PatientView(**dict(r)), lambda r: (r["patient_id"],))

    async def approvals(self, business_id: int, *, after: Key, limit: int, status: str) -> Page[ApprovalView]:
        """Approvals of one status in request order."""
        rows = await self._fetch("approvals", business_id, *after, status, limit + 1)
        return _page(rows, limit, _approval, lambda r: (r["position"], r["consultation_id"]))

    async def _fetch(self, name: str, *args: object) -> list[asyncpg.Record]:
        with translating_driver_errors():
            async with self._pool.acquire(timeout=self._acquire_timeout) as conn:
                return await conn.fetch(self._sql[name], *args)


def _page(rows: Sequence[asyncpg.Record], limit: int, view: Callable[[asyncpg.Record], V],
          key: Callable[[asyncpg.Record], Key]) -> Page[V]:
    # One more row than the limit was fetched: its presence says another page follows.
    more = len(rows) > limit
    rows = rows[:limit]
    return Page([view(r) for r in rows], key(rows[-1]) if more else None)


def consultation_view(r: Mapping[str, Any]) -> ConsultationView:
    """A consultations row (a record, or a ConsultationRow as a dict) as the read API shows it."""
    decision = Decision(r["decision"], r["reason"], r["clinician_id"]) if r["decision"] else None
    consent = (Consent(r["consent_document_version"], r["consent_accepted_at"])
               if r["consent_document_version"] is not None else None)
    return ConsultationView(r["consultation_id"], r["submission_id"], r["patient_id"], r["customer_id"],
                            r["product_id"], r["status"], r["submitted_at"], r["decided_at"], decision,
                            r["version"], consent, _partner_status(r))


def _partner_status(r: Mapping[str, Any]) -> PartnerStatus | None:
    # .get: a row read by a query that predates the partner columns (none of ours) shows none.
    if r.get("partner") is None:
        return None
    return PartnerStatus(r["partner"], r["partner_status"], r["partner_status_at"])


def _approval(r: asyncpg.Record) -> ApprovalView:
    return ApprovalView(**{k: v for k, v in r.items() if k != "position"})
