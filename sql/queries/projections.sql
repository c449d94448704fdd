-- name: ensure_checkpoints
-- Creating the rows first means there is always a row to lock: concurrent workers
-- on one stream queue on it, so a stream is applied in order, once. Sorted, like
-- every lock the projector takes, so that overlapping batches cannot deadlock.
INSERT INTO projection_checkpoints (projection, stream_id, version, position)
SELECT p.projection, s.stream_id, 0, 0
FROM unnest($1::text[]) AS p(projection) CROSS JOIN unnest($2::text[]) AS s(stream_id)
ORDER BY 1, 2
ON CONFLICT DO NOTHING;

-- name: lock_checkpoints
-- ORDER BY sits below the row locks: rows are locked in this order.
SELECT projection, stream_id, version
FROM projection_checkpoints
WHERE projection = ANY($1::text[]) AND stream_id = ANY($2::text[])
ORDER BY projection, stream_id
FOR UPDATE;

-- name: parked_among
-- Asked after the locks are held, in a statement of its own: a park committed by the
-- transaction we queued behind is then seen (a join in the locking statement would
-- re-read only the locked rows, not this table).
SELECT projection, stream_id FROM projection_failures
WHERE parked AND projection = ANY($1::text[]) AND stream_id = ANY($2::text[]);

-- name: stream_events
-- Every event of the streams, in stream order (the projector skips what each projection
-- has applied: streams are short). One index scan on events_stream_version_key; a join
-- against unnest() with the version in it was planned as a hash join over the whole
-- log once prepared (measured: 41-50 ms a batch).
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at, key_id, wrapped_key, kek_id
FROM event_rows
WHERE stream_id = ANY($1::text[])
ORDER BY stream_id, stream_version;

-- name: advance_checkpoints
-- Also forgets earlier failures of what now applied: attempts count one incident, not a lifetime.
WITH advanced AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[]) AS a(projection, stream_id, version, position)
), cleared AS (
    DELETE FROM projection_failures f USING advanced a
    WHERE f.projection = a.projection AND f.stream_id = a.stream_id AND NOT f.parked
)
UPDATE projection_checkpoints c SET version = a.version, position = a.position, applied_at = now()
FROM advanced a
WHERE c.projection = a.projection AND c.stream_id = a.stream_id;

-- name: lock_checkpoint
-- Recording a failure holds the pair's checkpoint lock, like applying it does.
SELECT version FROM projection_checkpoints WHERE projection = $1 AND stream_id = $2 FOR UPDATE;

-- name: record_failure
-- Only while the pair is still behind the failing event ($3): a worker may come to
-- record after another one has applied the pair, and that failure is stale.
INSERT INTO projection_failures AS f (projection, stream_id, version, position, attempts, error, parked)
SELECT $1, $2, $3, $4, 1, $5, $6 <= 1
WHERE NOT EXISTS (SELECT 1 FROM projection_checkpoints c
                  WHERE c.projection = $1 AND c.stream_id = $2 AND c.version >= $3)
ON CONFLICT (projection, stream_id) DO UPDATE
SET version = EXCLUDED.version, position = EXCLUDED.position, error = EXCLUDED.error,
    attempts = f.attempts + 1, parked = f.attempts + 1 >= $6, failed_at = now()
RETURNING attempts, parked;

-- name: floor
SELECT tx_id::text AS tx_id, position FROM projection_floors WHERE projection = $1;

-- name: window
-- Projection $1's events after its floor ($2, $3) in (tx_id, position) order: which
-- are unapplied (and not parked), and the next floor, the last event before the first
-- that is unapplied or not yet final. "Final" is the argument of events.sql: read_all:
-- a transaction still running holds a tx_id >= this snapshot's xmin, so any event it
-- may yet commit sorts after every event below the horizon. A parked event does not
-- hold the floor back (it is listed by status and retried by `projections retry`).
-- floor_holds: the floor's own event is still applied (a rebuild that resets
-- checkpoints moves the ground under a floor; the caller then starts from zero).
WITH horizon AS (
    SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin
), recent AS MATERIALIZED (
    SELECT e.tx_id, e.position, e.stream_id, e.recorded_at,
           e.stream_version <= coalesce(c.version, 0) OR f.stream_id IS NOT NULL AS settled
    FROM events e
    LEFT JOIN projection_checkpoints c ON c.projection = $1 AND c.stream_id = e.stream_id
    LEFT JOIN projection_failures f ON f.projection = $1 AND f.stream_id = e.stream_id AND f.parked
    WHERE (e.tx_id, e.position) > ($2::text::xid8, $3::bigint)
), first_open AS (
    SELECT r.tx_id, r.position
    FROM recent r, horizon h
    WHERE NOT r.settled OR r.tx_id >= h.xmin
    ORDER BY r.tx_id, r.position
    LIMIT 1
), next_floor AS (
    SELECT r.tx_id, r.position
    FROM recent r
    WHERE NOT EXISTS (SELECT 1 FROM first_open f WHERE (r.tx_id, r.position) >= (f.tx_id, f.position))
    ORDER BY r.tx_id DESC, r.position DESC
    LIMIT 1
)
SELECT (SELECT coalesce(array_agg(DISTINCT stream_id), '{}') FROM recent WHERE NOT settled) AS lagging,
       (SELECT count(*) FROM recent WHERE NOT settled) AS lag_events,
       (SELECT coalesce(extract(epoch FROM now() - min(recorded_at)), 0)::float8
          FROM recent WHERE NOT settled) AS lag_seconds,
       (SELECT max(position) FROM recent WHERE settled) AS newest_applied,
       (SELECT tx_id::text FROM next_floor) AS floor_tx,
       (SELECT position FROM next_floor) AS floor_position,
       $3 = 0 OR (SELECT bool_and(e.stream_version <= coalesce(c.version, 0) OR f.stream_id IS NOT NULL)
                    FROM events e
                    LEFT JOIN projection_checkpoints c ON c.projection = $1 AND c.stream_id = e.stream_id
                    LEFT JOIN projection_failures f ON f.projection = $1 AND f.stream_id = e.stream_id AND f.parked
                   WHERE e.position = $3) IS NOT FALSE AS floor_holds;

-- name: move_floor
-- Floors only move forward here; a floor that no longer holds is deleted instead.
INSERT INTO projection_floors AS f (projection, tx_id, position) VALUES ($1, $2::text::xid8, $3)
ON CONFLICT (projection) DO UPDATE SET tx_id = EXCLUDED.tx_id, position = EXCLUDED.position, moved_at = now()
WHERE (EXCLUDED.tx_id, EXCLUDED.position) > (f.tx_id, f.position);

-- name: drop_floor
DELETE FROM projection_floors WHERE projection = $1;

-- name: failing_streams
-- Streams whose projection failed but is not parked yet: retried by the sweep even
-- when the failing event is already behind the floor.
SELECT DISTINCT stream_id FROM projection_failures WHERE projection = ANY($1::text[]) AND NOT parked;

-- name: head_and_parked
-- The log's head, and per projection its parked streams.
SELECT p.projection, (SELECT coalesce(max(position), 0) FROM events) AS head_position,
       (SELECT count(*) FROM projection_failures f WHERE f.projection = p.projection AND f.parked) AS parked
FROM unnest($1::text[]) AS p(projection);

-- name: claim_outbox
SELECT position, stream_id FROM outbox
WHERE available_at <= now()
ORDER BY position
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: delete_outbox
DELETE FROM outbox WHERE position = ANY($1::bigint[]);

-- name: defer_outbox
-- The exponent is capped before the power is taken: 100 ms * 2^attempts overflows an interval
-- from attempts = 47 (about twenty minutes of Redis outage), and least() around the product
-- came too late. 2^9 * 100 ms already passes the 30 s cap. The counter itself stops at the
-- integer's maximum rather than failing the deferral.
UPDATE outbox SET attempts = least(attempts::bigint + 1, 2147483647),
       available_at = now() + least(interval '30 seconds', interval '100 milliseconds' * power(2, least(attempts, 9)))
WHERE position = ANY($1::bigint[]);

-- name: retry_parked
-- Un-parks, and forgets those projections' floors: the retried events sit behind them,
-- and should the caller die before applying them, the next sweep must still see them.
WITH retried AS (
    DELETE FROM projection_failures WHERE parked AND ($1::text IS NULL OR projection = $1)
    RETURNING projection, stream_id
), forgotten AS (
    DELETE FROM projection_floors WHERE projection IN (SELECT projection FROM retried)
)
SELECT projection, stream_id FROM retried;

-- name: upsert_patients
-- One row per patient (the batch keeps each patient's latest); the guard makes the
-- result independent of processing order across streams and workers.
INSERT INTO patients AS p (business_id, patient_id, customer_id, first_name, last_name, email, phone,
                           date_of_birth, source_position, updated_at, erased)
SELECT * FROM unnest($1::bigint[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                     $8::date[], $9::bigint[], $10::timestamptz[], $11::bool[])
ON CONFLICT (business_id, patient_id) DO UPDATE
SET first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, email = EXCLUDED.email,
    phone = EXCLUDED.phone, date_of_birth = EXCLUDED.date_of_birth,
    source_position = EXCLUDED.source_position, updated_at = EXCLUDED.updated_at, erased = EXCLUDED.erased
WHERE p.source_position < EXCLUDED.source_position;

-- name: get_consultation_rows
-- Columns named, in ConsultationRow's order: a column added by a later migration
-- must not break the projection that does not know it.
SELECT consultation_id, business_id, submission_id, patient_id, customer_id, product_id, status,
       submitted_at, decided_at, decision, reason, clinician_id, stream_id, version, position,
       consent_document_version, consent_accepted_at, partner, partner_status, partner_status_at
FROM consultations WHERE consultation_id = ANY($1::uuid[]);

-- name: upsert_consultations
-- Consent is set by the submission and never changes, so a conflict (a decision) leaves it.
INSERT INTO consultations (consultation_id, business_id, submission_id, patient_id, customer_id, product_id,
                           status, submitted_at, decided_at, decision, reason, clinician_id, stream_id,
                           version, position, consent_document_version, consent_accepted_at,
                           partner, partner_status, partner_status_at)
SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::uuid[], $5::text[], $6::text[], $7::text[],
                     $8::timestamptz[], $9::timestamptz[], $10::text[], $11::text[], $12::text[], $13::text[],
                     $14::int[], $15::bigint[], $16::text[], $17::timestamptz[], $18::text[], $19::text[],
                     $20::timestamptz[])
ON CONFLICT (consultation_id) DO UPDATE
SET status = EXCLUDED.status, decided_at = EXCLUDED.decided_at, decision = EXCLUDED.decision,
    reason = EXCLUDED.reason, clinician_id = EXCLUDED.clinician_id, version = EXCLUDED.version,
    partner = EXCLUDED.partner, partner_status = EXCLUDED.partner_status,
    partner_status_at = EXCLUDED.partner_status_at;

-- name: get_approval_rows
SELECT consultation_id, business_id, customer_id, product_id, status, requested_at, decided_at,
       clinician_id, position
FROM approvals WHERE consultation_id = ANY($1::uuid[]);

-- name: upsert_approvals
INSERT INTO approvals (consultation_id, business_id, customer_id, product_id, status, requested_at,
                       decided_at, clinician_id, position)
SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::timestamptz[],
                     $7::timestamptz[], $8::text[], $9::bigint[])
ON CONFLICT (consultation_id) DO UPDATE
SET status = EXCLUDED.status, decided_at = EXCLUDED.decided_at, clinician_id = EXCLUDED.clinician_id;

-- name: outbox_stats
SELECT count(*) AS backlog,
       coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8 AS oldest_age_s
FROM outbox;
