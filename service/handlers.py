"""The write side's one loop: load → decide → append, retried on optimistic-concurrency conflicts.

Every answer it gives corresponds to an event committed with its outbox row,
either by this request or by the earlier request that used the same key.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from events.codec import type_and_version
from events.errors import AppendConflict
from events.store import EventStore
from events.types import Event, EventMetadata, Idempotency, SubmissionDeduplicated
from service import domain, partner_domain

# A request needs at most three rounds (guess, reload, answer); more means a
# pathological hot stream, and the client is told to retry rather than spin here.
MAX_ATTEMPTS = 5


class IdempotencyKeyReused(Exception):
    """This idempotency key was already used with a different request."""


class TooMuchContention(Exception):
    """The stream kept changing under this request; retry it with the same key."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """The event that answers a command: appended by this request, or by the earlier request
    that used the same key (`replayed`). The answer is rebuilt from it, so it is the same forever."""

    event: Event
    event_id: uuid.UUID
    position: int
    replayed: bool = False


class Intake:
    """Command handlers over the event store."""

    def __init__(self, store: EventStore, *, new_id: Callable[[], uuid.UUID],
                 fault: Callable[[str], Awaitable[None]], on_append: Callable[[str], None]) -> None:
        self._store = store
        self._new_id = new_id
        self._fault = fault
        self._on_append = on_append

    async def submit(self, command: domain.SubmitConsult, key: Idempotency, meta: EventMetadata) -> Recorded:
        """Open a consultation, or answer with the open one, exactly once per key."""
        slot = domain.slot_stream(command.business_id, command.customer_id, command.product_id)
        # Optimistic first round: most submissions open a slot nobody has used,
        # so guess the initial state and let the unique (stream, version) say otherwise.
        state = domain.INITIAL_STATE
        for attempt in range(MAX_ATTEMPTS):
            if attempt:
                if prior := await self._replay(command.business_id, key):
                    return prior
                state = domain.fold(await self._store.read_stream(slot))
            event = domain.decide_submission(command, state)
            if isinstance(event, SubmissionDeduplicated):
                stream, expected = domain.request_stream(command.submission_id), 0
            else:
                stream, expected = slot, state.version
            if recorded := await self._append(stream, expected, event, command.business_id, key, meta):
                return recorded
        raise TooMuchContention(TooMuchContention.__doc__)

    async def decide(self, business_id: int, command: domain.DecideConsult, key: Idempotency,
                     meta: EventMetadata) -> Recorded:
        """Record a clinician's decision on a pending consultation, exactly once per key."""
        for _ in range(MAX_ATTEMPTS):
            if prior := await self._replay(business_id, key):
                return prior
            stream = await self._store.stream_of_consultation(business_id, command.consultation_id)
            if stream is None:
                raise domain.ConsultationNotFound(domain.ConsultationNotFound.__doc__)
            state = domain.fold(await self._store.read_stream(stream))
            try:
                event = domain.decide_decision(command, state)
            except domain.AlreadyDecided as refused:
                # A twin request under the same key may have committed between the
                # key check above and the stream read: that is a replay, not a conflict.
                return await self._replay_or_raise(business_id, key, refused)
            if recorded := await self._append(stream, state.version, event, business_id, key, meta):
                return recorded
        raise TooMuchContention(TooMuchContention.__doc__)

    async def report_partner_status(self, business_id: int, command: partner_domain.ReportPartnerStatus,
                                    key: Idempotency, meta: EventMetadata) -> Recorded:
        """Record a partner's status callback exactly once per webhook-id: insert first, and let the
        key's unique index turn a duplicate (however many arrive at once) into a replay."""
        stream = await self._store.stream_of_consultation(business_id, command.consultation_id)
        if stream is None:
            raise domain.ConsultationNotFound(domain.ConsultationNotFound.__doc__)
        for attempt in range(MAX_ATTEMPTS):
            if attempt and (prior := await self._replay(business_id, key)):
                return prior
            state = partner_domain.progress(await self._store.read_stream(stream), command.consultation_id)
            try:
                event = partner_domain.decide_partner_status(command, state)
            except partner_domain.PartnerStatusRefused as refused:
                # A late duplicate of the callback that moved the status is a replay, not a refusal.
                return await self._replay_or_raise(business_id, key, refused)
            if recorded := await self._append(stream, state.version, event, business_id, key, meta):
                return recorded
        raise TooMuchContention(TooMuchContention.__doc__)

    async def _replay_or_raise(self, business_id: int, key: Idempotency, refusal: Exception) -> Recorded:
        """The answer already recorded under this key, else the refusal."""
        if prior := await self._replay(business_id, key):
            return prior
        raise refusal

    async def _replay(self, business_id: int, key: Idempotency) -> Recorded | None:
        found = await self._store.find_by_idempotency_key(business_id, key.key)
        if found is None:
            return None
        event, fingerprint = found
        if fingerprint != key.fingerprint:
            raise IdempotencyKeyReused(IdempotencyKeyReused.__doc__)
        return Recorded(event.data, event.event_id, event.position, replayed=True)

    async def _append(self, stream: str, expected: int, event: Event, business_id: int,
                      key: Idempotency, meta: EventMetadata) -> Recorded | None:
        event_id = self._new_id()
        try:
            appended = await self._store.append(stream_id=stream, expected_version=expected,
                                                events=[(event_id, event)], business_id=business_id,
                                                metadata=meta, idempotency=key)
        except AppendConflict:
            return None
        self._on_append(type_and_version(event)[0])
        await self._fault("append.after_commit")
        return Recorded(event, event_id, appended.positions[0])
