-- name: lock_checkpoint
-- Creating the row first means there is always a row to lock: concurrent
-- workers on one stream queue here, so a stream is applied in order, once.
INSERT INTO projection_checkpoints (projection, stream_id, version, position)
VALUES ($1, $2, 0, 0)
ON CONFLICT DO NOTHING;

-- name: checkpoint_for_update
SELECT version FROM projection_checkpoints WHERE projection = $1 AND stream_id = $2 FOR UPDATE;

-- name: advance_checkpoint
UPDATE projection_checkpoints SET version = $3, position = $4, applied_at = now()
WHERE projection = $1 AND stream_id = $2;

-- name: stream_after
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at
FROM events
WHERE stream_id = $1 AND stream_version > $2
ORDER BY stream_version;

-- name: is_parked
SELECT parked FROM projection_failures WHERE projection = $1 AND stream_id = $2;

-- name: record_failure
INSERT INTO projection_failures AS f (projection, stream_id, version, position, attempts, error, parked)
VALUES ($1, $2, $3, $4, 1, $5, $6 <= 1)
ON CONFLICT (projection, stream_id) DO UPDATE
SET version = EXCLUDED.version, position = EXCLUDED.position, error = EXCLUDED.error,
    attempts = f.attempts + 1, parked = f.attempts + 1 >= $6, failed_at = now()
RETURNING attempts, parked;

-- name: clear_failure
DELETE FROM projection_failures WHERE projection = $1 AND stream_id = $2;

-- name: lagging_streams
-- Streams where some projection is behind the log. Cheap enough at this scale
-- (one pass over events' stream index); it is the safety net, not the hot path.
SELECT s.stream_id
FROM (SELECT stream_id, max(stream_version) AS head FROM events GROUP BY stream_id) AS s
CROSS JOIN unnest($1::text[]) AS p(projection)
LEFT JOIN projection_checkpoints c ON c.projection = p.projection AND c.stream_id = s.stream_id
LEFT JOIN projection_failures f ON f.projection = p.projection AND f.stream_id = s.stream_id AND f.parked
WHERE coalesce(c.version, 0) < s.head AND f.stream_id IS NULL
GROUP BY s.stream_id;

-- name: claim_outbox
SELECT position, stream_id FROM outbox
WHERE available_at <= now()
ORDER BY position
LIMIT $1
FOR UPDATE SKIP LOCKED;

-- name: delete_outbox
DELETE FROM outbox WHERE position = ANY($1::bigint[]);

-- name: defer_outbox
UPDATE outbox SET attempts = attempts + 1,
       available_at = now() + least(interval '30 seconds', interval '100 milliseconds' * power(2, attempts))
WHERE position = ANY($1::bigint[]);

-- name: status
SELECT p.projection,
       coalesce(max(c.position), 0) AS applied_position,
       (SELECT coalesce(max(position), 0) FROM events) AS head_position,
       (SELECT count(*) FROM events e
          LEFT JOIN projection_checkpoints c2 ON c2.projection = p.projection AND c2.stream_id = e.stream_id
         WHERE e.stream_version > coalesce(c2.version, 0)) AS lag_events,
       (SELECT coalesce(extract(epoch FROM now() - min(e.recorded_at)), 0)::float8 FROM events e
          LEFT JOIN projection_checkpoints c2 ON c2.projection = p.projection AND c2.stream_id = e.stream_id
         WHERE e.stream_version > coalesce(c2.version, 0)) AS lag_seconds,
       (SELECT count(*) FROM projection_failures f WHERE f.projection = p.projection AND f.parked) AS parked
FROM unnest($1::text[]) AS p(projection)
LEFT JOIN projection_checkpoints c ON c.projection = p.projection
GROUP BY p.projection
ORDER BY p.projection;

-- name: retry_parked
DELETE FROM projection_failures WHERE parked AND ($1::text IS NULL OR projection = $1)
RETURNING projection, stream_id;

-- name: upsert_patient
-- The guard makes the result independent of processing order across streams.
INSERT INTO patients AS p (business_id, patient_id, customer_id, first_name, last_name, email, phone,
                           date_of_birth, source_position, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (business_id, patient_id) DO UPDATE
SET first_name = EXCLUDED.first_name, last_name = EXCLUDED.last_name, email = EXCLUDED.email,
    phone = EXCLUDED.phone, date_of_birth = EXCLUDED.date_of_birth,
    source_position = EXCLUDED.source_position, updated_at = EXCLUDED.updated_at
WHERE p.source_position < EXCLUDED.source_position;

-- name: get_consultation_row
SELECT * FROM consultations WHERE consultation_id = $1;

-- name: upsert_consultation
INSERT INTO consultations (consultation_id, business_id, submission_id, patient_id, customer_id, product_id,
                           status, submitted_at, decided_at, decision, reason, clinician_id, stream_id,
                           version, position)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
ON CONFLICT (consultation_id) DO UPDATE
SET status = EXCLUDED.status, decided_at = EXCLUDED.decided_at, decision = EXCLUDED.decision,
    reason = EXCLUDED.reason, clinician_id = EXCLUDED.clinician_id, version = EXCLUDED.version;

-- name: get_approval_row
SELECT * FROM approvals WHERE consultation_id = $1;

-- name: upsert_approval
INSERT INTO approvals (consultation_id, business_id, customer_id, product_id, status, requested_at,
                       decided_at, clinician_id, position)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (consultation_id) DO UPDATE
SET status = EXCLUDED.status, decided_at = EXCLUDED.decided_at, clinician_id = EXCLUDED.clinician_id;
