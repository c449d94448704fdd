-- Patient data keys and the key-encryption keys that wrap them (events/keystore.py).

-- name: keks_in_use
SELECT kek_id FROM key_encryption_keys ORDER BY kek_id;

-- name: register_kek
INSERT INTO key_encryption_keys (kek_id) VALUES ($1) ON CONFLICT DO NOTHING;

-- name: destroy_patient_keys
-- Row locks (FOR NO KEY UPDATE) wait for appends holding a key FOR SHARE: an event sealed with
-- the key is either committed before it is destroyed, or not written and re-sealed with a new key.
UPDATE patient_keys SET wrapped_key = NULL, kek_id = NULL, destroyed_at = now()
WHERE business_id = $1 AND patient_id = $2 AND destroyed_at IS NULL
RETURNING key_id;

-- name: patient_had_keys
SELECT EXISTS (SELECT 1 FROM patient_keys WHERE business_id = $1 AND patient_id = $2) AS known;

-- name: stream_version
SELECT coalesce(max(stream_version), 0) AS version FROM events WHERE stream_id = $1;

-- name: keys_to_rewrap
-- A batch of live keys still wrapped by another KEK than the current one ($1).
SELECT key_id, wrapped_key, kek_id FROM patient_keys
WHERE destroyed_at IS NULL AND kek_id <> $1
ORDER BY key_id
LIMIT $2
FOR NO KEY UPDATE;

-- name: rewrap_keys
UPDATE patient_keys AS k SET wrapped_key = r.wrapped_key, kek_id = r.kek_id
FROM unnest($1::uuid[], $2::bytea[], $3::text[]) AS r(key_id, wrapped_key, kek_id)
WHERE k.key_id = r.key_id AND k.destroyed_at IS NULL;

-- name: retire_keks
-- KEKs no live key needs any more: a process may now start without them (a scan of patient_keys:
-- an operator's command, rare enough not to index kek_id for).
DELETE FROM key_encryption_keys AS c
WHERE c.kek_id <> $1
  AND NOT EXISTS (SELECT 1 FROM patient_keys k WHERE k.kek_id = c.kek_id)
RETURNING kek_id;

-- name: seals_table
-- `encrypt-existing` rewrites payloads: never once a seal has vouched for them.
SELECT to_regclass('public.seals') IS NOT NULL AS present;

-- name: any_seal
SELECT EXISTS (SELECT 1 FROM seals) AS sealed;

-- name: plaintext_events
-- Events written before encryption: personal fields still in the payload, no envelope.
SELECT position, event_id, event_type, business_id, stream_id, payload::text AS payload,
       (payload ->> 'patient_id')::uuid AS patient_id
FROM events
WHERE event_type = 'consult.submitted' AND position > $1 AND NOT payload ? 'sealed'
ORDER BY position
LIMIT $2;

-- name: allow_rewrite
ALTER TABLE events DISABLE TRIGGER events_no_update_delete;

-- name: forbid_rewrite
ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_update_delete;

-- name: seal_payloads
UPDATE events AS e SET payload = r.payload::jsonb
FROM unnest($1::int8[], $2::text[]) AS r(position, payload)
WHERE e.position = r.position;

-- name: create_patient_keys
INSERT INTO patient_keys (key_id, business_id, patient_id, wrapped_key, kek_id)
SELECT * FROM unnest($1::uuid[], $2::int8[], $3::uuid[], $4::bytea[], $5::text[])
ON CONFLICT DO NOTHING;

-- name: live_keys_of
SELECT key_id, business_id, patient_id, wrapped_key, kek_id FROM patient_keys
WHERE destroyed_at IS NULL AND (business_id, patient_id) IN (SELECT * FROM unnest($1::int8[], $2::uuid[]));
