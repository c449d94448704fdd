-- name: append_events
-- One statement appends a whole group-commit batch and its outbox rows.
-- ON CONFLICT DO NOTHING (no target) covers every unique constraint: a row that
-- loses a stream-version or idempotency-key race is skipped, not an error, so
-- one losing request cannot abort the others in its batch. The caller compares
-- what came back with what it sent.
WITH new_events AS (
    INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version,
                        business_id, idempotency_key, request_fingerprint, payload, metadata)
    SELECT e.event_id, e.stream_id, e.stream_version, e.event_type, e.schema_version,
           e.business_id, e.idempotency_key, e.request_fingerprint, e.payload::jsonb, e.metadata::jsonb
    FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::text[], $5::int2[], $6::int8[],
                $7::text[], $8::bytea[], $9::text[], $10::text[])
         AS e(event_id, stream_id, stream_version, event_type, schema_version,
              business_id, idempotency_key, request_fingerprint, payload, metadata)
    ON CONFLICT DO NOTHING
    RETURNING position, event_id, stream_id, tx_id, recorded_at
), new_outbox AS (
    INSERT INTO outbox (position, stream_id, tx_id)
    SELECT position, stream_id, tx_id FROM new_events
)
SELECT event_id, position, recorded_at,
       -- An uncorrelated scalar subquery runs once, and only if a row came back.
       (SELECT pg_notify('intake_outbox', '')) IS NULL AS notified
FROM new_events;

-- name: read_stream
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at
FROM events
WHERE stream_id = $1
ORDER BY stream_version;

-- name: find_by_idempotency_key
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at, request_fingerprint
FROM events
WHERE business_id = $1 AND idempotency_key = $2;

-- name: find_event
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at
FROM events
WHERE position = $1;

-- name: stream_of_consultation
SELECT stream_id
FROM events
WHERE event_type = 'consult.submitted' AND payload ->> 'consultation_id' = $1 AND business_id = $2;

-- name: read_all
-- The global reader. Positions are taken when a row is inserted, not when it
-- commits, so position order is not commit order: a reader that followed
-- positions alone would pass over a lower position that commits later. Rows of
-- transactions below the snapshot's xmin are final (every such transaction has
-- ended), so reading only those, in (tx_id, position) order, never skips.
-- $1/$2 is the cursor: the (tx_id, position) of the last event seen.
-- (No `tx_id::text AS tx_id` in the select list: ORDER BY would then sort by that
-- text alias, and '1000' < '997'.)
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at
FROM events
WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
  AND (tx_id, position) > ($1::text::xid8, $2::bigint)
ORDER BY tx_id, position
LIMIT $3;

-- name: cursor_of_position
SELECT tx_id::text AS tx_text FROM events WHERE position = $1;
