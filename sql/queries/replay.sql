-- name: replay_filter
-- The filter of both forms of `intake events replay` (`replay`, `replay_lines`; events/replay.py
-- puts it where they say /* replay_filter */): every filter optional (NULL: not filtering). The
-- command runs it once with its values, so PostgreSQL plans for them (a custom plan folds away the
-- NULL tests) and a consultation filter walks events_by_consultation, a position range the primary key.
WHERE position BETWEEN $1 AND $2
  AND ($3::int8 IS NULL OR business_id = $3)
  AND ($4::text IS NULL OR stream_id = $4)
  AND ($5::text IS NULL OR payload ->> 'consultation_id' = $5)
  AND ($6::text[] IS NULL OR event_type = ANY ($6) OR event_type || '.v' || schema_version = ANY ($7))
  AND ($8::timestamptz IS NULL OR recorded_at >= $8)
  AND ($9::timestamptz IS NULL OR recorded_at < $9)

-- name: replay
-- `intake events replay --format table`: the rows, read through a cursor and decoded in Python.
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at, key_id, wrapped_key, kek_id
FROM event_rows
/* replay_filter */
ORDER BY position;

-- name: replay_lines
-- `intake events replay --format jsonl`, run as `COPY (this) TO STDOUT` (events/jsonl.py): one
-- text value per event. A payload in today's shape with nothing sealed comes as the whole JSON line,
-- written as PostgreSQL sends it. Any other row (sealed personal fields, or an older shape for the
-- upcasters) comes as U+001E and its parts, separated by U+001F (no JSON text holds either raw): the
-- line's head (up to `"data":`) and tail, type, version, event id; when sealed, the envelope's key
-- id and ciphertext (its JSON text); and last the payload, without its envelope when sealed (the longest
-- part: the reader stops splitting before it). An envelope without a key id gives "none", which
-- data_keys never finds: that row is reported unreadable, as event_rows does (migration 0016). The
-- keys themselves are read apart, once per key,
-- in this statement's snapshot (data_keys): joining `patient_keys` here, as event_rows does, costs
-- more than the rest of the row. Values are formatted as msgspec encodes them (ints, lowercase
-- uuids, JSON-escaped strings, a UTC time with "Z" and microseconds unless zero), as
-- tests/integration/test_replay_lines.py checks. The tenth parameter: the tags written today.
SELECT CASE WHEN NOT e.payload ? 'sealed' AND e.event_type || '.v' || e.schema_version = ANY ($10::text[])
            THEN line.head || e.payload::text || line.tail
            WHEN sealed.key_id IS NULL
            THEN E'\x1e' || line.head || E'\x1f' || line.tail || E'\x1f' || e.event_type || E'\x1f' || e.schema_version
                 || E'\x1f' || e.event_id || E'\x1f\x1f\x1f' || e.payload::text
            ELSE E'\x1e' || line.head || E'\x1f' || line.tail || E'\x1f' || e.event_type || E'\x1f' || e.schema_version
                 || E'\x1f' || e.event_id || E'\x1f' || sealed.key_id
                 || E'\x1f' || coalesce(e.payload #> '{sealed,ciphertext}', 'null')::text
                 || E'\x1f' || (e.payload - 'sealed')::text
       END
FROM events AS e,
     LATERAL (SELECT CASE WHEN e.payload ? 'sealed' THEN coalesce(e.payload #>> '{sealed,key_id}', 'none') END AS key_id) AS sealed,
     LATERAL (SELECT to_char(e.recorded_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US') AS at) AS t,
     LATERAL (SELECT '{"position":' || e.position || ',"event_id":"' || e.event_id || '","stream_id":'
                     || to_json(e.stream_id) || ',"stream_version":' || e.stream_version || ',"type":'
                     || to_json(e.event_type) || ',"schema_version":' || e.schema_version || ',"recorded_at":"'
                     || CASE WHEN right(t.at, 7) = '.000000' THEN left(t.at, -7) ELSE t.at END || 'Z","data":' AS head,
                     ',"metadata":' || e.metadata::text || '}' AS tail) AS line
/* replay_filter */
ORDER BY e.position;

-- name: data_keys
-- The data keys a replay's sealed rows name ($1: their ids as the payloads spell them, returned as
-- `wanted`), as event_rows gives them: wrapped_key empty once destroyed; a key `patient_keys` never
-- had is absent, and so is an id that is not a uuid (tampered: the row reads as unreadable).
SELECT wanted.id AS wanted, key_id, coalesce(wrapped_key, '\x'::bytea) AS wrapped_key, kek_id
FROM unnest($1::text[]) AS wanted (id)
JOIN patient_keys ON key_id = CASE WHEN pg_input_is_valid(wanted.id, 'uuid') THEN wanted.id::uuid END;

-- name: consultation_history
-- Every event that names the consultation: its stream's submission and decision, and the
-- submissions deduplicated onto it from other streams (events_by_consultation, 0008).
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at, key_id, wrapped_key, kek_id
FROM event_rows
WHERE payload ->> 'consultation_id' = $1 AND business_id = $2
ORDER BY position;

-- name: commit_timestamps_tracked
SELECT current_setting('track_commit_timestamp')::bool AS tracked;

-- name: clock
SELECT clock_timestamp() AS now;

-- name: mark_transaction
-- A transaction id taken now (in its own one-statement transaction, which ends at once): every
-- transaction that already had one when the clock was read has a lower id. (A snapshot's xip list
-- would not do: it omits transactions at or above its xmax, which is only the newest completed + 1.)
SELECT pg_current_xact_id()::text AS xid;

-- name: older_still_open
-- Whether a transaction with an id ≤ $1 that has written to the log is still in progress. Only such a
-- transaction can add events: it holds RowExclusiveLock on events until it ends, and releases it only
-- after its commit is visible to new snapshots. A long transaction that never wrote to events (a
-- `projections verify`, a report) is not waited for. A transaction's own id is the transactionid lock
-- it holds; ids compare modulo 2^32, as PostgreSQL's 32-bit xids do (every running transaction is
-- within 2^31 of the newest).
SELECT EXISTS (
    SELECT FROM pg_locks wrote
    JOIN pg_locks own ON own.virtualtransaction = wrote.virtualtransaction
                     AND own.locktype = 'transactionid' AND own.mode = 'ExclusiveLock' AND own.granted
    WHERE wrote.locktype = 'relation' AND wrote.relation = 'events'::regclass
      AND wrote.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND wrote.mode = 'RowExclusiveLock' AND wrote.granted
      AND (($1::text::numeric - own.transactionid::text::numeric) % 4294967296 + 4294967296) % 4294967296
          < 2147483648
) AS waiting;

-- name: as_of_events
-- The candidates for "committed at $1", with their commit time when PostgreSQL knows it
-- (track_commit_timestamp). A transaction starts before it commits, so rows recorded after $1
-- (recorded_at is the transaction's start) are out at once. A 32-bit xid names one transaction
-- only within 2^31 of the newest, so an older row's commit time counts as unknown rather than
-- risk reading a later transaction's; PostgreSQL also forgets commit times behind the freeze
-- horizon and never had them for transactions committed while the setting was off (NULL).
WITH horizon AS (
    SELECT greatest(pg_snapshot_xmax(pg_current_snapshot())::text::numeric - 2147483648, 0)::text::xid8 AS oldest
)
SELECT e.position, e.event_id, e.stream_id, e.stream_version, e.event_type, e.schema_version, e.business_id,
       e.payload::text AS payload, e.metadata::text AS metadata, e.recorded_at, e.key_id, e.wrapped_key, e.kek_id,
       CASE WHEN e.tx_id >= horizon.oldest THEN pg_xact_commit_timestamp(e.tx_id::xid) END AS committed_at
FROM event_rows AS e, horizon
WHERE e.recorded_at <= $1
  AND ($2::int8 IS NULL OR e.business_id = $2)
  AND ($3::text IS NULL OR e.payload ->> 'consultation_id' = $3)
  AND ($4::text IS NULL OR (e.event_type IN ('consult.submitted', 'patient.forgotten') AND e.payload ->> 'patient_id' = $4))
ORDER BY e.position;
