-- A sealed envelope whose key id is not a key id (text that is not a uuid, a number, an object,
-- or no key id at all) reads as the nil uuid, which no data key ever has: its reader reports that
-- one event as unreadable (events/store.py: tampering, a clear error). The cast of 0010 failed the
-- whole statement instead (a history answered 500; a replay, the projector's batch, a rebuild and
-- a webhook claim stopped at the row), for every event the statement read.
-- Dropped and created, not replaced: the view's `e.*` now also carries the columns added since 0010.
DROP VIEW event_rows;
CREATE VIEW event_rows AS
SELECT e.*, sealed.key_id,
       (SELECT coalesce(k.wrapped_key, '\x'::bytea) FROM patient_keys k WHERE k.key_id = sealed.key_id) AS wrapped_key,
       (SELECT k.kek_id FROM patient_keys k WHERE k.key_id = sealed.key_id) AS kek_id
FROM events e,
     LATERAL (SELECT CASE WHEN NOT e.payload ? 'sealed' THEN NULL
                          WHEN pg_input_is_valid(e.payload #>> '{sealed,key_id}', 'uuid')
                          THEN (e.payload #>> '{sealed,key_id}')::uuid
                          ELSE '00000000-0000-0000-0000-000000000000'::uuid END AS key_id) AS sealed;
GRANT SELECT ON event_rows TO intake_app;
