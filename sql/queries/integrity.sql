-- name: latest_seal
SELECT seal_no, tree_size, root_hash, prev_seal, sealed_at, key_id, signature,
       last_tx_id::text AS last_tx, last_position, right_edge
FROM seals
ORDER BY seal_no DESC
LIMIT 1;

-- name: seal_by_number
SELECT seal_no, tree_size, root_hash, prev_seal, sealed_at, key_id, signature,
       last_tx_id::text AS last_tx, last_position, right_edge
FROM seals
WHERE seal_no = $1;

-- name: all_seals
SELECT seal_no, tree_size, root_hash, prev_seal, sealed_at, key_id, signature,
       last_tx_id::text AS last_tx, last_position, right_edge
FROM seals
ORDER BY seal_no;

-- name: new_leaves
-- What the next seal adds: the events after the last seal's cursor, below the global reader's
-- horizon (see events.sql: read_all), in its (tx_id, position) order. Every transaction below the
-- snapshot's xmin has ended and every later one gets a larger tx_id, so what is sealed is final
-- and a prefix of what the next seal sees.
SELECT hash, tx_id::text AS tx_text, position
FROM events
WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
  AND (tx_id, position) > ($1::text::xid8, $2::bigint)
ORDER BY tx_id, position;

-- name: insert_seal
INSERT INTO seals (seal_no, tree_size, root_hash, prev_seal, sealed_at, key_id, signature,
                   last_tx_id, last_position, right_edge)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::xid8, $9, $10);

-- name: scan_events
-- verify: every column the chain covers, in the seals' order, after a cursor.
SELECT position, tx_id::text AS tx_text, hash, event_id::text AS event_id, stream_id, stream_version, event_type,
       schema_version, business_id, idempotency_key, request_fingerprint,
       payload::text AS payload, metadata::text AS metadata, recorded_at
FROM events
WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
  AND (tx_id, position) > ($1::text::xid8, $2::bigint)
ORDER BY tx_id, position;

-- name: count_events
SELECT count(*) FROM events;

-- name: previous_hash
-- verify --from-seal: the hash a stream's event chains onto when its predecessor is sealed already.
SELECT hash FROM events WHERE stream_id = $1 AND stream_version = $2;

-- name: first_leaves
-- A proof's tree: the first $1 events in the seals' order.
SELECT hash
FROM events
ORDER BY tx_id, position
LIMIT $1;

-- name: event_for_proof
-- An event, its leaf index (how many events come before it in the seals' order: an index-only
-- scan of events_tx_position) and every column its hash covers.
SELECT e.position, e.hash, e.event_id, e.stream_id, e.stream_version, e.event_type, e.schema_version,
       e.business_id, e.idempotency_key, e.request_fingerprint, e.payload::text AS payload,
       e.metadata::text AS metadata, e.recorded_at,
       (SELECT count(*) FROM events b WHERE (b.tx_id, b.position) < (e.tx_id, e.position)) AS leaf_index,
       (SELECT p.hash FROM events p WHERE p.stream_id = e.stream_id
                                      AND p.stream_version = e.stream_version - 1) AS prev_hash
FROM events e
WHERE e.position = $1;

-- name: event_position_for_business
SELECT position FROM events WHERE business_id = $1 AND event_id = $2;

-- name: rechain_stream
-- Recompute one stream's chain after an operator rewrite (see migration 0011: events_rechain).
SELECT events_rechain($1);
