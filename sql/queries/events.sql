-- name: append_events
-- One statement appends a whole group-commit batch and its outbox rows, as a transaction of its
-- own (no BEGIN or COMMIT round trips: migration 0014).
-- ON CONFLICT DO NOTHING (no target) covers every unique constraint: a row that
-- loses a stream-version or idempotency-key race is skipped, not an error, so
-- one losing request cannot abort the others in its batch. The caller compares
-- what came back with what it sent. A request whose rows ($17: each row's request number) were
-- only partly inserted aborts the whole statement (`partial`), and the caller retries each
-- request of the batch alone.
-- Patient data keys ($11-$15) are stored by the first append that uses them. An event sealed
-- with a key is written only if that key is live: stored by this statement, or already live
-- and locked FOR SHARE until commit, so `forget` (which destroys keys FOR UPDATE) either waits
-- for this batch or is seen by it. Nothing is written sealed with a destroyed key, or with a
-- key that lost the race to be a patient's one live key: the caller learns which keys were not
-- usable (`unusable_key` rows) and encrypts again. Only those come back: in the usual case (every
-- key new, or live) no key row is returned, and `live_keys` is not even scanned when every key
-- of the batch is new (the AND below stops at `new_keys`; the events' WHERE checks `new_keys` first).
WITH new_keys AS (
    INSERT INTO patient_keys (key_id, business_id, patient_id, wrapped_key, kek_id)
    SELECT * FROM unnest($11::uuid[], $12::int8[], $13::uuid[], $14::bytea[], $15::text[])
        AS k(key_id, business_id, patient_id, wrapped_key, kek_id)
    -- Only under a KEK some process checked at its start (key_encryption_keys): a process that
    -- started unchecked learns it on its first new key (events/store.py) instead of writing keys
    -- nobody could unwrap.
    WHERE k.kek_id IN (SELECT kek_id FROM key_encryption_keys)
    ON CONFLICT DO NOTHING
    RETURNING key_id
), live_keys AS (
    SELECT key_id FROM patient_keys
    WHERE key_id = ANY ($11::uuid[]) AND destroyed_at IS NULL
    FOR SHARE
), new_events AS (
    INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version,
                        business_id, idempotency_key, request_fingerprint, payload, metadata)
    SELECT e.event_id, e.stream_id, e.stream_version, e.event_type, e.schema_version,
           e.business_id, e.idempotency_key, e.request_fingerprint, e.payload::jsonb, e.metadata::jsonb
    FROM unnest($1::uuid[], $2::text[], $3::int4[], $4::text[], $5::int2[], $6::int8[],
                $7::text[], $8::bytea[], $9::text[], $10::text[], $16::uuid[])
         AS e(event_id, stream_id, stream_version, event_type, schema_version,
              business_id, idempotency_key, request_fingerprint, payload, metadata, key_id)
    WHERE e.key_id IS NULL OR e.key_id IN (SELECT key_id FROM new_keys) OR e.key_id IN (SELECT key_id FROM live_keys)
    ON CONFLICT DO NOTHING
    RETURNING position, event_id, stream_id, tx_id, recorded_at
), new_outbox AS (
    INSERT INTO outbox (position, stream_id, tx_id)
    SELECT position, stream_id, tx_id FROM new_events
), partial AS (
    SELECT FROM unnest($1::uuid[], $17::int4[]) AS r(event_id, request)
    LEFT JOIN new_events n ON n.event_id = r.event_id
    GROUP BY r.request
    HAVING count(n.event_id) BETWEEN 1 AND count(*) - 1
)
SELECT event_id, position, recorded_at, NULL::uuid AS unusable_key,
       -- Uncorrelated scalar subqueries run once, and only if a row came back (none came back:
       -- nothing was inserted, so nothing can be partly inserted).
       (SELECT pg_notify('intake_outbox', '')) IS NULL AS notified,
       (SELECT CASE WHEN EXISTS (SELECT FROM partial) THEN append_partial_request() END) AS partial
FROM new_events
UNION ALL
SELECT NULL, NULL, NULL, k.key_id, NULL, NULL FROM unnest($11::uuid[]) AS k(key_id)
WHERE k.key_id NOT IN (SELECT key_id FROM new_keys) AND k.key_id NOT IN (SELECT key_id FROM live_keys);

-- name: read_stream
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at, key_id, wrapped_key, kek_id
FROM event_rows
WHERE stream_id = $1
ORDER BY stream_version;

-- name: find_by_idempotency_key
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at, key_id, wrapped_key, kek_id, request_fingerprint
FROM event_rows
WHERE business_id = $1 AND idempotency_key = $2;

-- name: find_event
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at, key_id, wrapped_key, kek_id
FROM event_rows
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
       payload::text AS payload, metadata::text AS metadata, recorded_at, key_id, wrapped_key, kek_id
FROM event_rows
WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
  AND (tx_id, position) > ($1::text::xid8, $2::bigint)
ORDER BY tx_id, position
LIMIT $3;

-- name: cursor_of_position
SELECT tx_id::text AS tx_text FROM events WHERE position = $1;

-- name: live_patient_key
SELECT key_id, wrapped_key, kek_id
FROM patient_keys
WHERE business_id = $1 AND patient_id = $2 AND destroyed_at IS NULL;
