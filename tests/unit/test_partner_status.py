"""Partner status reports, given/when/then: what the decider allows, what the consultation model
shows, and what an outbound webhook body may carry (identifiers only)."""

from __future__ import annotations

import datetime as dt
import json
import random

import pytest

from events.types import PartnerStatusReported
from projections import consultations, webhook_bodies, webhook_policy
from service.partner_domain import PartnerStatusRefused, ReportPartnerStatus, decide_partner_status, progress
from tests.support.stored_events import NOW, decided, stored, submitted


def report(consultation_id, status: str, webhook_id: str = "msg_1") -> ReportPartnerStatus:
    return ReportPartnerStatus(consultation_id=consultation_id, partner="pharmacy", status=status,
                               webhook_id=webhook_id, reference=None, reported_at=NOW, at=NOW)


def stream(*statuses: str, verdict: str | None = "approved"):
    """A slot stream: a submission, its verdict (if any), then partner reports."""
    opened = submitted()
    events = [stored(opened)]
    if verdict:
        events.append(stored(decided(opened.consultation_id, verdict), version=2, position=2))
    for n, status in enumerate(statuses, start=len(events) + 1):
        events.append(stored(decide_partner_status(report(opened.consultation_id, status),
                                                   progress(events, opened.consultation_id)),
                             version=n, position=n))
    return opened.consultation_id, events


@pytest.mark.parametrize("before, after", [
    ((), "accepted"), ((), "completed"), (("accepted",), "in_progress"), (("accepted", "in_progress"), "completed"),
    (("in_progress",), "cancelled"), ((), "cancelled")])
def test_statuses_move_forward_or_to_cancelled(before, after):
    consultation_id, events = stream(*before)
    state = progress(events, consultation_id)
    event = decide_partner_status(report(consultation_id, after), state)
    assert (event.status, state.version) == (after, len(events))


@pytest.mark.parametrize("before, after, reason", [
    (("completed",), "cancelled", "already completed"), (("cancelled",), "accepted", "already cancelled"),
    (("in_progress",), "accepted", "cannot go to accepted"), (("accepted",), "accepted", "cannot go to accepted")])
def test_a_status_may_not_go_back_or_leave_a_final_one(before, after, reason):
    consultation_id, events = stream(*before)
    with pytest.raises(PartnerStatusRefused, match=reason):
        decide_partner_status(report(consultation_id, after), progress(events, consultation_id))


@pytest.mark.parametrize("verdict, reason", [(None, "pending, not approved"), ("rejected", "rejected, not approved")])
def test_only_an_approved_consultation_takes_a_partner_status(verdict, reason):
    consultation_id, events = stream(verdict=verdict)
    with pytest.raises(PartnerStatusRefused, match=reason):
        decide_partner_status(report(consultation_id, "accepted"), progress(events, consultation_id))


def test_the_consultation_model_shows_the_latest_partner_status_and_its_signed_time():
    consultation_id, events = stream("accepted", "in_progress")
    row = None
    for event in events:
        if consultations.key(event) == consultation_id:
            row = consultations.evolve(row, event)
    assert row is not None
    assert (row.partner, row.partner_status, row.partner_status_at, row.version) == ("pharmacy", "in_progress", NOW, 4)
    assert (row.status, row.decision) == ("approved", "approved")


def test_webhook_bodies_carry_identifiers_and_decisions_never_patient_details_or_reasons():
    consultation_id, events = stream("accepted")
    for event, kind in zip(events, ("consult.submitted", "consult.approved", "partner.status_reported"), strict=True):
        text = webhook_bodies.body(event, events, kind)
        body = json.loads(text)
        assert body["type"] == kind and body["data"]["consultation_id"] == str(consultation_id)
        assert body["data"]["customer_id"] == "cus_1" and body["data"]["event_id"] == str(event.event_id)
        for personal in (b"Ada", b"Lovelace", b"ada@example.com", b"1990", b"cough", b"Meets the criteria"):
            assert personal not in text
    assert isinstance(events[-1].data, PartnerStatusReported)


def test_the_default_retry_schedule_is_ten_attempts_over_about_a_day_with_bounded_jitter():
    still = random.Random(0)
    waits = [webhook_policy.retry_delay_s(n, 5.0, rng=still) for n in range(1, 10)]
    nominal = [5 * 4 ** (n - 1) if n < 8 else 8 * 3600 for n in range(1, 10)]
    assert all(0.8 * want <= got <= 1.2 * want for got, want in zip(waits, nominal, strict=True))
    assert 0.8 * 23.6 * 3600 < sum(waits) < 1.2 * 23.6 * 3600
    assert webhook_policy.retry_delay_s(1, 5.0, retry_after_s=120, rng=still) == 120  # Retry-After honoured
    assert webhook_policy.retry_delay_s(1, 5.0, retry_after_s=10**9, rng=still) == 5.0 * webhook_policy.CAP_FACTOR
    assert [webhook_policy.retryable(s) for s in (None, 429, 500, 503, 400, 404, 301)] == [True] * 4 + [False] * 3


@pytest.mark.parametrize("url, https_only, why", [
    ("http://shop.example/h", True, "must be https"), ("https://user:pw@shop.example/h", True, "no credentials"),
    ("https://shop.example:99999/h", True, "port"), ("javascript:alert(1)", False, "https or http"),
    ("https://shop.example/a b", True, "visible characters")])
def test_endpoint_urls_are_checked_before_any_lookup(url, https_only, why):
    with pytest.raises(webhook_policy.EndpointRefused, match=why):
        webhook_policy.check_url(url, https_only=https_only)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "192.168.0.1", "169.254.169.254", "::1", "fe80::1",
                                     "100.64.0.1", "0.0.0.0"])
def test_private_loopback_and_link_local_addresses_are_refused_unless_allowed(address):
    with pytest.raises(webhook_policy.EndpointRefused):
        webhook_policy.check_addresses([address], ())
    webhook_policy.check_addresses([address], webhook_policy.networks("0.0.0.0/0,::/0"))
    webhook_policy.check_addresses(["93.184.216.34"], ())


def test_times_in_bodies_are_utc():
    consultation_id, events = stream()
    moved = events[0].data.__class__(**{**{f: getattr(events[0].data, f) for f in events[0].data.__struct_fields__},
                                        "submitted_at": NOW.astimezone(dt.timezone(dt.timedelta(hours=2)))})
    body = json.loads(webhook_bodies.body(stored(moved), [stored(moved)], "consult.submitted"))
    assert body["data"]["submitted_at"] == "2026-11-22T12:00:00Z"
