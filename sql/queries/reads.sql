-- The read API: every query is scoped to one business ($1) and walks an index in
-- the order it returns, so a page costs its own rows, not the rows before it.

-- name: consultation
SELECT consultation_id, submission_id, patient_id, customer_id, product_id, status,
       submitted_at, decided_at, decision, reason, clinician_id, version, position,
       consent_document_version, consent_accepted_at, partner, partner_status, partner_status_at
FROM consultations
WHERE consultation_id = $2 AND business_id = $1;

-- name: consultations
-- Keyset on (position, consultation_id) after the cursor ($2, $3); walks
-- consultations_by_business. The bare `position >= $2` lets the index bound the scan.
--
-- A status filter is a separate query (consultations_in_status), not
-- `($4 IS NULL OR status = $4)`: asyncpg prepares statements, and a generic plan
-- must serve both values of that test, so it cannot use a status index and walks
-- the tenant's rows filtering each. Here $4 is the caller's status, always NULL:
-- the test makes a misrouted status return nothing rather than every status.
SELECT consultation_id, submission_id, patient_id, customer_id, product_id, status,
       submitted_at, decided_at, decision, reason, clinician_id, version, position,
       consent_document_version, consent_accepted_at, partner, partner_status, partner_status_at
FROM consultations
WHERE business_id = $1
  AND position >= $2 AND (position, consultation_id) > ($2, $3::uuid)
  AND $4::text IS NULL
ORDER BY position, consultation_id
LIMIT $5;

-- name: consultations_in_status
-- The same list in one status ($4): walks consultations_by_status, so a status
-- no row has costs an index descent, not the tenant.
SELECT consultation_id, submission_id, patient_id, customer_id, product_id, status,
       submitted_at, decided_at, decision, reason, clinician_id, version, position,
       consent_document_version, consent_accepted_at, partner, partner_status, partner_status_at
FROM consultations
WHERE business_id = $1 AND status = $4
  AND position >= $2 AND (position, consultation_id) > ($2, $3::uuid)
ORDER BY position, consultation_id
LIMIT $5;

-- name: consultations_of_customer
-- The same list for one customer ($6): walks consultations_by_customer instead.
SELECT consultation_id, submission_id, patient_id, customer_id, product_id, status,
       submitted_at, decided_at, decision, reason, clinician_id, version, position,
       consent_document_version, consent_accepted_at, partner, partner_status, partner_status_at
FROM consultations
WHERE business_id = $1 AND customer_id = $6
  AND position >= $2 AND (position, consultation_id) > ($2, $3::uuid)
  AND $4::text IS NULL
ORDER BY position, consultation_id
LIMIT $5;

-- name: consultations_of_customer_in_status
-- One customer's ($6) list in one status ($4): walks consultations_by_customer_status.
SELECT consultation_id, submission_id, patient_id, customer_id, product_id, status,
       submitted_at, decided_at, decision, reason, clinician_id, version, position,
       consent_document_version, consent_accepted_at, partner, partner_status, partner_status_at
FROM consultations
WHERE business_id = $1 AND customer_id = $6 AND status = $4
  AND position >= $2 AND (position, consultation_id) > ($2, $3::uuid)
ORDER BY position, consultation_id
LIMIT $5;

-- name: patient
SELECT patient_id, customer_id, first_name, last_name, email, phone, date_of_birth, updated_at, erased
FROM patients
WHERE business_id = $1 AND patient_id = $2;

-- name: patients
-- Keyset on patient_id (the primary key's second column); the first page
-- passes the nil UUID, which no patient has (their ids are name-based, version 5).
SELECT patient_id, customer_id, first_name, last_name, email, phone, date_of_birth, updated_at, erased
FROM patients
WHERE business_id = $1 AND patient_id > $2
ORDER BY patient_id
LIMIT $3;

-- name: approvals
-- Keyset on (position, consultation_id) within one status: walks approvals_by_business.
SELECT consultation_id, customer_id, product_id, status, requested_at, decided_at, clinician_id, position
FROM approvals
WHERE business_id = $1 AND status = $4
  AND position >= $2 AND (position, consultation_id) > ($2, $3::uuid)
ORDER BY position, consultation_id
LIMIT $5;

-- name: projection_lag
-- Read-your-writes. Is some event of business $3 at or below position $2 not yet
-- applied by projection $1 (its stream's checkpoint is below its version)? A
-- parked stream counts as not applied: waiting is the honest answer, not stale rows.
--
-- Only events after the caller's floor ($4, $5) are looked at: everything
-- before it, in (tx_id, position) order, is known applied. The floor is that
-- order, not position alone, because positions are taken at insert and a lower
-- one can commit later; any such transaction is still running now, so its
-- tx_id is >= this snapshot's xmin and sorts after every final event (the same
-- argument as events.sql: read_all). The scan walks events_tx_position from the
-- floor, so it costs the events since the oldest unapplied or unfinished one.
--
-- Also says whether position $2 is past the log's head: no write has returned it, so
-- waiting for it would only cost the client 2 s and a 503 (asked twice, it is 400 at once).
-- Also returns the next floor: the last event before the first that is
-- unapplied or not yet final; and whether the floor's own event is still
-- applied (a rebuild that resets checkpoints moves the ground under a floor).
WITH horizon AS (
    SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin
), recent AS MATERIALIZED (
    SELECT e.tx_id, e.position, e.business_id, e.stream_version <= coalesce(c.version, 0) AS applied
    FROM events e
    LEFT JOIN projection_checkpoints c ON c.projection = $1 AND c.stream_id = e.stream_id
    WHERE (e.tx_id, e.position) > ($4::text::xid8, $5::bigint)
), first_open AS (
    SELECT r.tx_id, r.position
    FROM recent r, horizon h
    WHERE NOT r.applied OR r.tx_id >= h.xmin
    ORDER BY r.tx_id, r.position
    LIMIT 1
)
SELECT EXISTS (SELECT 1 FROM recent WHERE position <= $2 AND business_id = $3 AND NOT applied) AS lagging,
       (SELECT bool_and(e.stream_version <= coalesce(c.version, 0))
          FROM events e
          LEFT JOIN projection_checkpoints c ON c.projection = $1 AND c.stream_id = e.stream_id
         WHERE e.position = $5) IS NOT FALSE AS floor_holds,
       next_floor.tx_id::text AS floor_tx, next_floor.position AS floor_position,
       $2 > coalesce((SELECT max(position) FROM events), 0) AS beyond_head
FROM (SELECT 1) AS one
LEFT JOIN LATERAL (
    SELECT r.tx_id, r.position
    FROM recent r
    WHERE NOT EXISTS (SELECT 1 FROM first_open f WHERE (r.tx_id, r.position) >= (f.tx_id, f.position))
    ORDER BY r.tx_id DESC, r.position DESC
    LIMIT 1
) AS next_floor ON true;
