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
-- verify, as a binary COPY whose fields events/log_scan.py reads by their order and sizes: the
-- fixed-size columns first, then the variable ones, the last four in their canonical order (the
-- chain's definition takes payload and metadata as `::text`). In the seals' order, after a cursor.
SELECT hash, position, recorded_at, stream_version, schema_version, business_id, event_id,
       stream_id, event_type, idempotency_key, request_fingerprint, payload::text, metadata::text
FROM events
WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
  AND (tx_id, position) > ($1::text::xid8, $2::bigint)
ORDER BY tx_id, position;

-- name: count_events
SELECT count(*) FROM events;

-- name: sealed_predecessors
-- verify --from-seal: for each stream with events after the seal's cursor, the stored hash of the
-- event before the first of them in the scan's order (the seal vouches for it; verify chains onto it).
SELECT f.stream_id, p.stream_version, p.hash
FROM (SELECT DISTINCT ON (stream_id) stream_id, stream_version
      FROM events
      WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
        AND (tx_id, position) > ($1::text::xid8, $2::bigint)
      ORDER BY stream_id, tx_id, position) f
JOIN events p ON p.stream_id = f.stream_id AND p.stream_version = f.stream_version - 1;

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
