-- name: ensure_cursor
INSERT INTO webhook_cursor (name, tx_id, position) VALUES ($1, '0', 0) ON CONFLICT (name) DO NOTHING;

-- name: lock_cursor
-- One fan-out at a time per cursor: several workers queue here instead of racing.
SELECT tx_id::text AS tx_text, position FROM webhook_cursor WHERE name = $1 FOR UPDATE;

-- name: fan_out
-- read_all's rule (sql/queries/events.sql): only rows of transactions below the snapshot's xmin,
-- in (tx_id, position) order after the cursor, so an event that commits late is never passed.
-- Every event scanned moves the cursor; those an enabled endpoint of their business subscribes to
-- (recorded after the endpoint was registered) get a delivery row: ids only, no payload.
-- consult.decided is published as consult.approved or consult.rejected.
WITH scanned AS (
    SELECT position, event_id, business_id, tx_id, recorded_at,
           CASE WHEN event_type = 'consult.decided' THEN 'consult.' || (payload ->> 'decision')
                ELSE event_type END AS webhook_type
    FROM events
    WHERE tx_id < pg_snapshot_xmin(pg_current_snapshot())
      AND (tx_id, position) > ($1::text::xid8, $2::bigint)
    ORDER BY tx_id, position
    LIMIT $3
), fanned AS (
    INSERT INTO webhook_deliveries (endpoint_id, business_id, event_id, event_position, webhook_type, committed_at)
    SELECT e.id, s.business_id, s.event_id, s.position, s.webhook_type, s.recorded_at
    FROM scanned s
    JOIN webhook_endpoints e ON e.business_id = s.business_id AND e.disabled_at IS NULL
                            AND s.webhook_type = ANY (e.event_types) AND s.recorded_at >= e.created_at
    ORDER BY s.tx_id, s.position
    ON CONFLICT ON CONSTRAINT webhook_deliveries_once DO NOTHING
    RETURNING 1
), last AS (
    SELECT tx_id::text AS tx_text, position FROM scanned ORDER BY tx_id DESC, position DESC LIMIT 1
)
SELECT (SELECT count(*) FROM scanned) AS scanned, (SELECT count(*) FROM fanned) AS fanned,
       (SELECT tx_text FROM last) AS tx_text, (SELECT position FROM last) AS position;

-- name: move_cursor
UPDATE webhook_cursor SET tx_id = $2::text::xid8, position = $3 WHERE name = $1;

-- name: claim_due
-- Due deliveries of enabled endpoints, leased (next_attempt_at pushed past the request's timeout)
-- so no other worker takes them meanwhile; a worker that dies mid-send leaves them to be retried
-- when the lease runs out. Endpoints this worker already has at its per-endpoint limit ($1) are
-- skipped, and no endpoint gets more than its free slots ($2 ids, $3 in flight, $4 the limit): a
-- slow endpoint's backlog never fills a claim that other endpoints' deliveries are waiting for.
WITH candidates AS (
    SELECT d.id, d.endpoint_id, d.next_attempt_at
    FROM webhook_deliveries d
    JOIN webhook_endpoints e ON e.id = d.endpoint_id AND e.disabled_at IS NULL
    WHERE d.state = 'pending' AND d.next_attempt_at <= now() AND d.endpoint_id <> ALL ($1::uuid[])
    ORDER BY d.next_attempt_at, d.id
    LIMIT $5
    FOR UPDATE OF d SKIP LOCKED
), ranked AS (
    SELECT id, endpoint_id, row_number() OVER (PARTITION BY endpoint_id ORDER BY next_attempt_at, id) AS rank
    FROM candidates
), picked AS (
    SELECT r.id FROM ranked r
    LEFT JOIN unnest($2::uuid[], $3::int[]) AS busy (endpoint_id, in_flight) ON busy.endpoint_id = r.endpoint_id
    WHERE r.rank <= $4 - coalesce(busy.in_flight, 0)
)
UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $6)
FROM picked, webhook_endpoints e
WHERE d.id = picked.id AND e.id = d.endpoint_id
RETURNING d.id, d.endpoint_id, d.event_id, d.event_position, d.webhook_type, d.attempts, d.budget_from,
          d.committed_at, e.url, e.sealed_secret, e.previous_sealed,
          coalesce(e.previous_until > now(), false) AS previous_valid;

-- name: event_with_stream
-- The event to deliver and its stream up to it (a body names the consultation's customer and
-- product, which a decision or a partner report does not carry), in one round trip. Bodies carry
-- no personal data, so sealed fields are read as erased, without the patients' keys.
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at, key_id, wrapped_key, kek_id
FROM event_rows
WHERE stream_id = (SELECT stream_id FROM events WHERE position = $1)
  AND stream_version <= (SELECT stream_version FROM events WHERE position = $1)
ORDER BY stream_version;

-- name: record_attempt
-- Only while still pending: a redelivery or a second worker's answer after a lease ran out must not
-- turn a settled delivery back.
WITH settled AS (
    UPDATE webhook_deliveries
    SET attempts = attempts + 1, state = $2, next_attempt_at = coalesce($3, next_attempt_at),
        delivered_at = CASE WHEN $2 = 'delivered' THEN now() END
    WHERE id = $1 AND state = 'pending'
    RETURNING id, attempts
)
INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, status_code, latency_ms, error, next_attempt_at)
SELECT id, attempts, $4, $5, $6, $7, $3 FROM settled
RETURNING attempt;

-- name: create_endpoint
INSERT INTO webhook_endpoints (id, business_id, url, event_types, sealed_secret)
VALUES ($1, $2, $3, $4, $5) RETURNING created_at;

-- name: list_endpoints
-- Never the sealed secrets.
SELECT e.id, b.slug, e.url, e.event_types, e.created_at, e.disabled_at
FROM webhook_endpoints e JOIN businesses b ON b.id = e.business_id
WHERE $1::bigint IS NULL OR e.business_id = $1
ORDER BY e.created_at, e.id;

-- name: disable_endpoint
UPDATE webhook_endpoints SET disabled_at = coalesce(disabled_at, now())
WHERE id = $1 AND ($2::bigint IS NULL OR business_id = $2)
RETURNING disabled_at;

-- name: rotate_endpoint_secret
UPDATE webhook_endpoints
SET previous_sealed = $3, previous_until = now() + make_interval(secs => $4), sealed_secret = $5
WHERE id = $1 AND ($2::bigint IS NULL OR business_id = $2)
RETURNING id;

-- name: sealed_secret
SELECT sealed_secret FROM webhook_endpoints WHERE id = $1 AND ($2::bigint IS NULL OR business_id = $2);

-- name: list_deliveries
-- Newest first; $2: only those that failed (dead, or pending after a failed attempt).
SELECT d.id, b.slug, d.endpoint_id, e.url, d.event_id, d.event_position, d.webhook_type, d.state, d.attempts,
       d.next_attempt_at, d.delivered_at, a.status_code AS last_status, a.error AS last_error,
       a.latency_ms AS last_latency_ms
FROM webhook_deliveries d
JOIN webhook_endpoints e ON e.id = d.endpoint_id
JOIN businesses b ON b.id = d.business_id
LEFT JOIN LATERAL (SELECT status_code, error, latency_ms FROM webhook_attempts
                   WHERE delivery_id = d.id ORDER BY attempt DESC LIMIT 1) a ON true
WHERE ($1::bigint IS NULL OR d.business_id = $1)
  AND (NOT $2 OR d.state = 'dead' OR (d.state = 'pending' AND d.attempts > d.budget_from))
ORDER BY d.id DESC
LIMIT $3;

-- name: list_attempts
SELECT attempt, attempted_at, status_code, latency_ms, error, next_attempt_at
FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt;

-- name: redeliver
-- Sent again with the same webhook-id and a fresh schedule; its earlier attempts stay listed.
UPDATE webhook_deliveries
SET state = 'pending', next_attempt_at = now(), budget_from = attempts, delivered_at = NULL
WHERE id = $1 AND ($2::bigint IS NULL OR business_id = $2)
RETURNING id;

-- name: redeliver_since
UPDATE webhook_deliveries
SET state = 'pending', next_attempt_at = now(), budget_from = attempts, delivered_at = NULL
WHERE committed_at >= $1 AND ($2::bigint IS NULL OR business_id = $2) AND state <> 'pending'
RETURNING id;

-- name: delivery_stats
-- For /metrics: deliveries by state, failed attempts, and the age of the oldest due delivery.
SELECT (SELECT count(*) FROM webhook_deliveries WHERE state = 'pending') AS pending,
       (SELECT count(*) FROM webhook_deliveries WHERE state = 'delivered') AS delivered,
       (SELECT count(*) FROM webhook_deliveries WHERE state = 'dead') AS dead,
       (SELECT count(*) FROM webhook_attempts WHERE status_code IS NULL OR status_code NOT BETWEEN 200 AND 299)
           AS failed_attempts,
       coalesce((SELECT extract(epoch FROM now() - min(committed_at)) FROM webhook_deliveries
                 WHERE state = 'pending'), 0)::float8 AS lag_s;
