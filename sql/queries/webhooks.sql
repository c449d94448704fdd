-- name: ensure_cursor
INSERT INTO webhook_cursor (name, tx_id, position) VALUES ($1, '0', 0) ON CONFLICT (name) DO NOTHING;

-- name: relaxed_commit
-- For the fan-out's and the claims' own connections (never the attempts' record): their commits
-- return without waiting for the WAL flush, which on a busy disk took longer than the rest of the
-- step. Safe because losing such a commit in a server crash only undoes work that is then done
-- again: the delivery rows go with the cursor that made them, so they are made again; a claim's
-- lease goes, so the delivery is sent again with the same webhook-id (at least once, as after a
-- worker's crash). Nothing is ever seen that is not committed; only its durability waits.
SET synchronous_commit = off;

-- name: fan_out
-- One step of the cursor ($1), in one statement (one round trip, its own transaction): a busy
-- worker's event loop adds its lag to each round trip, and five of them (begin, lock, scan, move,
-- commit) were most of the fan-out's median (docs/PERFORMANCE.md).
-- One fan-out at a time per cursor: a worker that finds it taken gets nothing (`locked` 0) and skips
-- its turn instead of queueing; the one holding it goes again at once if more was appended meanwhile.
-- The cursor moves by read_all's rule (sql/queries/events.sql): only through rows of transactions
-- below the snapshot's xmin, in (tx_id, position) order, so an event that commits late is never
-- passed over. Deliveries are made sooner than that: for every committed event the statement sees
-- after the cursor (the `settled` ones below xmin, which come first in this order, and the others,
-- committed while an older transaction still runs). Without this a delivery waited for the slowest
-- transaction running anywhere (an append whose COMMIT its API process had not yet sent, a
-- projector's batch), which was most of the fan-out's tail. An early event is seen again by each
-- scan until the cursor passes it; NOT EXISTS leaves it out before the insert (a row that conflicts
-- still draws an id) and the unique (endpoint, event) settles any race.
-- Those an enabled endpoint of their business subscribes to (recorded after the endpoint was
-- registered) get a delivery row: ids only, no payload.
-- consult.decided is published as consult.approved or consult.rejected.
WITH cursor AS (
    -- FOR UPDATE reads the newest committed cursor, even one moved after this statement's snapshot.
    SELECT tx_id, position FROM webhook_cursor WHERE name = $1 FOR UPDATE SKIP LOCKED
), visible AS (
    SELECT position, event_id, business_id, tx_id, recorded_at,
           CASE WHEN event_type = 'consult.decided' THEN 'consult.' || (payload ->> 'decision')
                ELSE event_type END AS webhook_type,
           tx_id < pg_snapshot_xmin(pg_current_snapshot()) AS settled
    FROM events
    -- Scalar subqueries, not a join: an index range scan in (tx_id, position) order that stops at
    -- the limit, not a sort of everything after the cursor.
    WHERE (tx_id, position) > ((SELECT tx_id FROM cursor), (SELECT position FROM cursor))
    ORDER BY tx_id, position
    LIMIT $2
), fanned AS (
    INSERT INTO webhook_deliveries (endpoint_id, business_id, event_id, event_position, webhook_type, committed_at)
    SELECT e.id, s.business_id, s.event_id, s.position, s.webhook_type, s.recorded_at
    FROM visible s
    JOIN webhook_endpoints e ON e.business_id = s.business_id AND e.disabled_at IS NULL
                            AND s.webhook_type = ANY (e.event_types) AND s.recorded_at >= e.created_at
    WHERE NOT EXISTS (SELECT FROM webhook_deliveries d WHERE d.endpoint_id = e.id AND d.event_id = s.event_id)
    ORDER BY s.tx_id, s.position
    ON CONFLICT ON CONSTRAINT webhook_deliveries_once DO NOTHING
    RETURNING 1
), last AS (
    SELECT tx_id, position FROM visible WHERE settled ORDER BY tx_id DESC, position DESC LIMIT 1
), moved AS (
    UPDATE webhook_cursor c SET tx_id = l.tx_id, position = l.position FROM last l WHERE c.name = $1
)
SELECT (SELECT count(*) FROM cursor) AS locked, (SELECT count(*) FROM visible WHERE settled) AS scanned,
       (SELECT count(*) FROM fanned) AS fanned;

-- name: claim_due
-- Due deliveries of enabled endpoints, leased for $6 s (next_attempt_at pushed past the requests'
-- timeouts) so no other worker takes them meanwhile; a worker that dies mid-send leaves them to be
-- retried when the lease runs out. Endpoints this worker already holds as many of as it may ($1)
-- are skipped, and no endpoint gets more than its room ($2 ids, $3 held, $4 what a worker may hold
-- of one endpoint): a slow endpoint's backlog never fills a claim that other endpoints' deliveries
-- are waiting for.
-- In the same statement, each claimed event's stream up to it (a body names the consultation's
-- customer and product, which a decision or a partner report does not carry): one row per claimed
-- delivery and event of its stream, in delivery id and stream order, the delivery's columns repeated.
-- One round trip per claim, not two: under load each round trip waits its turn in the sender's
-- event loop, and the second was most of the claim stage's tail (docs/PERFORMANCE.md). The events
-- are visible to this statement's snapshot: a delivery row is made only for a committed event.
-- The stream's `event_id` is the stream event's; the delivery's (its webhook-id) is `webhook_id`.
-- Bodies carry no personal data, so sealed fields are read as erased, without the patients' keys.
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
), claimed AS (
    UPDATE webhook_deliveries d SET next_attempt_at = now() + make_interval(secs => $6)
    FROM picked, webhook_endpoints e
    WHERE d.id = picked.id AND e.id = d.endpoint_id
    RETURNING d.id, d.endpoint_id, d.event_id, d.event_position, d.webhook_type, d.attempts, d.budget_from,
              d.committed_at, e.url, e.sealed_secret, e.previous_sealed,
              coalesce(e.previous_until > now(), false) AS previous_valid
)
-- LATERAL: index lookups per claimed delivery, whatever the planner guesses the claim returns (a
-- plain join let it pick a hash join over the whole log).
SELECT c.id, c.endpoint_id, c.event_id AS webhook_id, c.event_position, c.webhook_type, c.attempts,
       c.budget_from, c.committed_at, c.url, c.sealed_secret, c.previous_sealed, c.previous_valid,
       r.position, r.event_id, r.stream_id, r.stream_version, r.event_type, r.schema_version, r.business_id,
       r.payload::text AS payload, r.metadata::text AS metadata, r.recorded_at, r.key_id, r.wrapped_key, r.kek_id
FROM claimed c
LEFT JOIN LATERAL (
    SELECT r.* FROM events w JOIN event_rows r ON r.stream_id = w.stream_id AND r.stream_version <= w.stream_version
    WHERE w.position = c.event_position
) r ON true
ORDER BY c.id, r.stream_version;

-- name: record_attempts
-- The finished attempts of a batch (one array element each), in one statement. Each delivery is
-- updated only while still pending: a redelivery or a second worker's answer after a lease ran out
-- must not turn a settled delivery back. Rows are locked in id order so that two workers recording
-- overlapping batches (possible only after a lease ran out) cannot deadlock.
WITH outcome AS (
    SELECT * FROM unnest($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[], $6::int[],
                         $7::text[]) AS o (id, state, next_at, attempted_at, status_code, latency_ms, error)
), locked AS (
    SELECT d.id FROM webhook_deliveries d JOIN outcome o ON o.id = d.id
    WHERE d.state = 'pending'
    ORDER BY d.id
    FOR UPDATE OF d
), settled AS (
    UPDATE webhook_deliveries d
    SET attempts = d.attempts + 1, state = o.state, next_attempt_at = coalesce(o.next_at, d.next_attempt_at),
        delivered_at = CASE WHEN o.state = 'delivered' THEN now() END
    FROM locked l, outcome o
    WHERE d.id = l.id AND o.id = d.id AND d.state = 'pending'
    RETURNING d.id, d.attempts
)
INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, status_code, latency_ms, error, next_attempt_at)
SELECT s.id, s.attempts, o.attempted_at, o.status_code, o.latency_ms, o.error, o.next_at
FROM settled s JOIN outcome o ON o.id = s.id;

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
