-- Rebuilding and verifying read models from the log (projections/rebuild.py, projections/verify.py).
-- Blocks with {table} are DDL templates: PostgreSQL cannot bind identifiers as parameters, so
-- they are filled with a read model's table name from projections/batch.py (a constant, never input).

-- name: try_rebuild_lock
-- Session-level, so it is held for the whole rebuild and released however the session ends
-- (kill -9 included: the server drops the session and its locks with it).
SELECT pg_try_advisory_lock(7301001) AS locked;

-- name: drop_shadow
-- Leftovers of an interrupted rebuild: never live tables (those are in public).
DROP SCHEMA IF EXISTS intake_rebuild CASCADE;

-- name: create_shadow
CREATE SCHEMA intake_rebuild;

-- name: create_bare_shadow_table
-- Same name in another schema: the copy's column order and types are the live table's (so the
-- API's prepared statements keep their result type across the swap), and names derived from
-- the table name (NOT NULL, CHECK) come out identical.
-- A read model's shadow starts without indexes (nor the PRIMARY KEY and UNIQUE constraints they
-- back): filled by COPY in no useful order, every row would insert into each index, and that
-- index maintenance was ~70 % of a rebuild's WAL and much of its CPU. shadow_index_statements
-- adds them once the bulk is in, each built by one sort. Autovacuum is off until
-- enable_shadow_autovacuum: its workers (not niced) vacuumed and analyzed the growing shadow
-- during the bulk in most measured runs, some tables twice.
CREATE TABLE intake_rebuild.{table} (LIKE public.{table} INCLUDING ALL EXCLUDING INDEXES)
WITH (autovacuum_enabled = false);

-- name: shadow_index_statements
-- The live table's indexes, for its shadow, under their live names: constraints (primary key,
-- unique, exclusion) as constraints, since their names are what errors are translated by, and
-- the other indexes from their definitions.
SELECT CASE WHEN con.oid IS NOT NULL
            THEN format('ALTER TABLE intake_rebuild.%I ADD CONSTRAINT %I %s', t.relname, con.conname,
                        pg_get_constraintdef(con.oid))
            ELSE regexp_replace(pg_get_indexdef(i.indexrelid), ' ON public\.', ' ON intake_rebuild.')
       END AS statement
FROM pg_index i
JOIN pg_class t ON t.oid = i.indrelid
LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.conrelid = i.indrelid AND con.contype IN ('p', 'u', 'x')
WHERE i.indrelid = format('public.%I', $1::text)::regclass
ORDER BY i.indexrelid;

-- name: serial_index_builds
-- For the session that builds the shadow's indexes: no parallel workers. A rebuild is background
-- work and its backends run at a lower CPU priority; parallel workers would not (they are other
-- processes), and would take both cores from the API for the length of each sort.
SET max_parallel_maintenance_workers = 0;

-- name: create_unlogged_shadow_table
-- The shadow's checkpoints and failures are never swapped in, only read by the swap (which copies
-- what differs into the live tables, WAL-logged there): unlogged, they write no WAL, which was a
-- third of a rebuild's (a crash loses them, and the rebuild they belonged to with them).
CREATE UNLOGGED TABLE intake_rebuild.{table} (LIKE public.{table} INCLUDING ALL)
WITH (autovacuum_enabled = false);

-- name: rename_shadow_indexes
-- LIKE names copied indexes after their columns; give each the live name of the index with the
-- same definition (renaming an index renames the constraint it backs): constraint names are
-- what errors are translated and failures recorded by.
SELECT format('ALTER INDEX intake_rebuild.%I RENAME TO %I', s.indexname, l.indexname) AS statement
FROM pg_indexes l
JOIN pg_indexes s ON s.schemaname = 'intake_rebuild' AND s.tablename = l.tablename
 AND regexp_replace(s.indexdef, '^CREATE (UNIQUE )?INDEX \S+ ON \S+', '\1')
   = regexp_replace(l.indexdef, '^CREATE (UNIQUE )?INDEX \S+ ON \S+', '\1')
WHERE l.schemaname = 'public' AND l.tablename = $1 AND s.indexname <> l.indexname;

-- name: copy_grants
-- LIKE copies no privileges: grant the copy exactly what the live table has (migration 0005's
-- grants to intake_app, and whatever a later migration added).
SELECT format('GRANT %s ON intake_rebuild.%I TO %I', string_agg(a.privilege_type, ', '), c.relname, r.rolname)
       AS statement
FROM pg_class c
CROSS JOIN LATERAL aclexplode(c.relacl) a
JOIN pg_roles r ON r.oid = a.grantee
WHERE c.oid = format('public.%I', $1::text)::regclass AND a.grantee <> c.relowner
GROUP BY c.relname, r.rolname;

-- name: analyze_shadow_table
-- Fresh statistics before the swap: the API's plans on the new table should not wait for autovacuum.
-- (Not VACUUM: setting the visibility map here measured +11 % WAL and +15 % server CPU during the
-- rebuild; reads go by index, and autovacuum does it once the table is live.)
ANALYZE intake_rebuild.{table};

-- name: enable_shadow_autovacuum
-- The live table's setting (the default) back, in the swap's transaction: set earlier, an
-- autovacuum of the freshly filled shadow could hold the lock the move waits for (it gives way
-- only after deadlock_timeout, as long as the swap's lock_timeout), failing the swap.
ALTER TABLE intake_rebuild.{table} RESET (autovacuum_enabled);

-- name: snapshot
-- The first statement of the bulk read's REPEATABLE READ transaction: this is its snapshot.
SELECT pg_current_snapshot()::text AS snapshot, (SELECT count(*) FROM events) AS events,
       (SELECT count(*) FROM events WHERE event_type IN ('consult.submitted', 'patient.forgotten')) AS submissions;

-- name: log_in_stream_order
-- The whole log, one stream after another (an index scan on events_stream_version_key, no sort):
-- a consultation's events are all in its slot's stream, so a fold needs one stream in memory.
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at, key_id, wrapped_key, kek_id
FROM event_rows
ORDER BY stream_id, stream_version;

-- name: submissions_in_patient_order
-- A patient's submissions come from several slots' streams; grouped by patient here (the server
-- sorts, spilling to disk past work_mem), in log order within a patient: "latest wins by position".
SELECT position, event_id, stream_id, stream_version, event_type, schema_version, business_id,
       payload::text AS payload, metadata::text AS metadata, recorded_at, key_id, wrapped_key, kek_id, payload ->> 'patient_id' AS patient_key
FROM event_rows
WHERE event_type IN ('consult.submitted', 'patient.forgotten')
ORDER BY business_id, patient_key, position;

-- name: streams_since
-- Streams with an event this statement sees and snapshot $1 did not, and this statement's
-- snapshot (both from the same one). pg_visible_in_snapshot is exact, whatever the commit order.
SELECT pg_current_snapshot()::text AS snapshot,
       ARRAY(SELECT DISTINCT stream_id FROM events
             WHERE tx_id >= pg_snapshot_xmin($1::text::pg_snapshot)
               AND NOT pg_visible_in_snapshot(tx_id, $1::text::pg_snapshot)) AS streams;

-- name: swap_lock_timeout
-- For this transaction only: give up on a lock rather than queue every reader behind our request.
SELECT set_config('lock_timeout', $1, true);

-- name: lock_checkpoints_table
-- Every projector transaction starts by writing checkpoints (ROW EXCLUSIVE): EXCLUSIVE waits for
-- those in flight and holds new ones back, so nothing changes the live read models until the swap
-- commits. Readers (ACCESS SHARE) are not held back.
LOCK TABLE public.projection_checkpoints IN EXCLUSIVE MODE;

-- name: lock_live_table
LOCK TABLE public.{table} IN ACCESS EXCLUSIVE MODE;

-- name: drop_live_table
DROP TABLE public.{table};

-- name: move_shadow_table
ALTER TABLE intake_rebuild.{table} SET SCHEMA public;

-- name: replace_checkpoints
-- The checkpoints of the projections $1 (all of a rebuild's at once: one scan of each table, not
-- one per projection, seconds apiece at a million streams, inside the swap) become the shadow's.
-- Only rows that differ are written: a live model that was right costs a scan, not a rewrite.
-- They are picked before the upsert, not by its WHERE: ON CONFLICT DO UPDATE locks every
-- conflicting row even when its WHERE is false, and a million row locks are a million WAL
-- records that the swap's commit (and every submission's commit queued behind it) must flush.
-- The caller holds projection_checkpoints in EXCLUSIVE mode, so nothing changes in between.
WITH gone AS (
    DELETE FROM public.projection_checkpoints c
    WHERE c.projection = ANY($1::text[]) AND NOT EXISTS (
        SELECT 1 FROM intake_rebuild.projection_checkpoints s WHERE s.projection = c.projection AND s.stream_id = c.stream_id)
), changed AS (
    SELECT s.projection, s.stream_id, s.version, s.position
    FROM intake_rebuild.projection_checkpoints s
    LEFT JOIN public.projection_checkpoints c ON c.projection = s.projection AND c.stream_id = s.stream_id
    WHERE s.projection = ANY($1::text[])
      AND (c.stream_id IS NULL OR (c.version, c.position) IS DISTINCT FROM (s.version, s.position))
)
INSERT INTO public.projection_checkpoints AS c (projection, stream_id, version, position)
SELECT projection, stream_id, version, position FROM changed
ON CONFLICT (projection, stream_id) DO UPDATE
SET version = EXCLUDED.version, position = EXCLUDED.position, applied_at = now();

-- name: drop_failures
DELETE FROM public.projection_failures WHERE projection = $1;

-- name: copy_failures
INSERT INTO public.projection_failures
SELECT * FROM intake_rebuild.projection_failures WHERE projection = $1;

-- name: drop_floor
DELETE FROM public.projection_floors WHERE projection = $1;

-- name: settle_floor
-- Every event of a transaction below the swap snapshot's xmin ($2) had ended before it, so is in
-- the shadow: the newest of them is a floor (unless a failure is still being retried: then the
-- sweep starts from zero once).
INSERT INTO public.projection_floors (projection, tx_id, position)
SELECT $1, tx_id, position FROM events
WHERE tx_id < pg_snapshot_xmin($2::text::pg_snapshot)
  AND NOT EXISTS (SELECT 1 FROM intake_rebuild.projection_failures WHERE projection = $1 AND NOT parked)
ORDER BY tx_id DESC, position DESC
LIMIT 1;

-- name: covered_in_stream_order
-- What projection $1's checkpoints say it has applied, one stream after another.
SELECT e.position, e.event_id, e.stream_id, e.stream_version, e.event_type, e.schema_version, e.business_id,
       e.payload::text AS payload, e.metadata::text AS metadata, e.recorded_at, e.key_id, e.wrapped_key, e.kek_id
FROM projection_checkpoints c
JOIN event_rows e ON e.stream_id = c.stream_id AND e.stream_version <= c.version
WHERE c.projection = $1
ORDER BY e.stream_id, e.stream_version;

-- name: covered_submissions_in_patient_order
SELECT e.position, e.event_id, e.stream_id, e.stream_version, e.event_type, e.schema_version, e.business_id,
       e.payload::text AS payload, e.metadata::text AS metadata, e.recorded_at, e.key_id, e.wrapped_key, e.kek_id,
       e.payload ->> 'patient_id' AS patient_key
FROM projection_checkpoints c
JOIN event_rows e ON e.stream_id = c.stream_id AND e.stream_version <= c.version
WHERE c.projection = $1 AND e.event_type IN ('consult.submitted', 'patient.forgotten')
ORDER BY e.business_id, patient_key, e.position;

-- name: create_scratch_table
-- Verify's scratch copy: temporary, gone with the transaction, never seen by another session.
CREATE TEMP TABLE verify_{table} (LIKE public.{table}) ON COMMIT DROP;

-- name: compare_tables
-- {key}: the key columns; {columns}: one `CASE WHEN … IS DISTINCT FROM … THEN 'name' END` per column.
-- Keys and column names only: the values are patient data.
SELECT {key_select}, l.{first_key} IS NULL AS missing_live, r.{first_key} IS NULL AS missing_rebuilt,
       array_remove(ARRAY[{columns}], NULL) AS columns, count(*) OVER () AS differing
FROM public.{table} l
FULL JOIN pg_temp.verify_{table} r USING ({key})
WHERE l.{first_key} IS NULL OR r.{first_key} IS NULL OR cardinality(array_remove(ARRAY[{columns}], NULL)) > 0
ORDER BY {key}
LIMIT $1;

-- name: count_rows
SELECT (SELECT count(*) FROM public.{table}) AS live_rows, (SELECT count(*) FROM pg_temp.verify_{table}) AS rebuilt_rows;
