"""What a partner's status callback may do to a consultation. Pure: no I/O, no clock, no uuid4.

Partners act on approved consultations only, and a status moves forward: accepted → in_progress →
completed, or to cancelled from any status but a final one. A report that would move it otherwise
is refused with the reason (HTTP 409), so a late or misrouted callback cannot rewind what the
storefront has already acted on.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterable

import msgspec

from events.types import ConsultDecided, ConsultSubmitted, PartnerStatusReported, StoredEvent
from service.domain import DomainError

STATUSES = ("accepted", "in_progress", "completed", "cancelled")
_FINAL = frozenset({"completed", "cancelled"})
_ORDER = {"accepted": 0, "in_progress": 1, "completed": 2}


class PartnerStatusRefused(DomainError):
    """The consultation cannot take this partner status."""


class ReportPartnerStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Record the status a partner's signed callback reports."""

    consultation_id: uuid.UUID
    partner: str
    status: str
    webhook_id: str
    reference: str | None
    reported_at: dt.datetime
    at: dt.datetime


class Progress(msgspec.Struct, frozen=True, kw_only=True):
    """What deciding on a partner status needs to know about one consultation of a slot stream."""

    version: int = 0  # the stream's version, for the append
    exists: bool = False
    decision: str | None = None
    partner_status: str | None = None


def progress(events: Iterable[StoredEvent], consultation_id: uuid.UUID) -> Progress:
    """The consultation's progress from its slot's stream."""
    state = Progress()
    for stored in events:
        data = stored.data
        mine = getattr(data, "consultation_id", None) == consultation_id
        changes: dict[str, object] = {"version": stored.stream_version}
        if mine and isinstance(data, ConsultSubmitted):
            changes["exists"] = True
        elif mine and isinstance(data, ConsultDecided):
            changes["decision"] = data.decision
        elif mine and isinstance(data, PartnerStatusReported):
            changes["partner_status"] = data.status
        state = msgspec.structs.replace(state, **changes)
    return state


def decide_partner_status(command: ReportPartnerStatus, state: Progress) -> PartnerStatusReported:
    """The event recording the report, or PartnerStatusRefused with the reason."""
    if state.decision != "approved":
        raise PartnerStatusRefused(f"the consultation is {state.decision or 'pending'}, not approved")
    current = state.partner_status
    if current in _FINAL:
        raise PartnerStatusRefused(f"the partner status is already {current}")
    if current is not None and command.status != "cancelled" and _ORDER[command.status] <= _ORDER[current]:
        raise PartnerStatusRefused(f"the partner status is already {current}: it cannot go to {command.status}")
    return PartnerStatusReported(
        consultation_id=command.consultation_id, partner=command.partner, status=command.status,
        webhook_id=command.webhook_id, reference=command.reference, reported_at=command.reported_at,
        received_at=command.at)
