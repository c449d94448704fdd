-- Crypto-shredding (events/privacy.py): one data key per patient of a business, stored only
-- wrapped by a key-encryption key (KEK) from configuration. Forgetting a patient destroys the
-- wrapped key (NULL) and keeps the row, so an event sealed with it reads as erased rather than
-- as an unknown key, and the destruction itself stays on record.

-- The KEKs that have wrapped keys in this database. A process refuses to start unless it is
-- configured with every one of them (a missing or wrong KEK would otherwise write events
-- nobody can read later); `keys rotate-kek` removes a KEK once no live key uses it.
CREATE TABLE key_encryption_keys (
    kek_id        text PRIMARY KEY,
    registered_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE patient_keys (
    key_id       uuid PRIMARY KEY,
    business_id  bigint NOT NULL,
    patient_id   uuid NOT NULL,
    wrapped_key  bytea,  -- nonce ‖ AES-GCM(KEK, data key, associated data = key_id); NULL once destroyed
    -- Which KEK wrapped it (a hash prefix of the KEK, events/privacy.py kek_id); the append stores a
    -- key only under a registered KEK (no foreign key: every new patient's key would lock the one
    -- KEK row, FOR KEY SHARE, a multixact per append). NULL once destroyed: nothing is wrapped.
    kek_id       text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    destroyed_at timestamptz,
    CONSTRAINT patient_keys_destroyed_has_no_key
        CHECK ((wrapped_key IS NULL) = (destroyed_at IS NOT NULL) AND (kek_id IS NULL) = (destroyed_at IS NOT NULL))
);
-- At most one live key per patient: concurrent first submissions race on it, and the loser
-- re-encrypts with the winner's key (events/store.py).
CREATE UNIQUE INDEX patient_keys_one_live ON patient_keys (business_id, patient_id) WHERE destroyed_at IS NULL;

-- Every reader of the log reads through this view: each row with the wrapped data key its
-- sealed personal fields need. key_id NULL: nothing sealed. wrapped_key: the key; empty once
-- destroyed (the fields read "[erased]"); NULL if no such key exists (tampering: an error).
-- Scalar subqueries, not a join: the log is still read in the order its own index gives (a
-- replay streams from the first row; a join was planned as a hash join and a sort of the whole
-- log, spilling to disk), and each sealed row costs one primary-key probe per column.
CREATE VIEW event_rows AS
SELECT e.*, sealed.key_id,
       (SELECT coalesce(k.wrapped_key, '\x'::bytea) FROM patient_keys k WHERE k.key_id = sealed.key_id) AS wrapped_key,
       (SELECT k.kek_id FROM patient_keys k WHERE k.key_id = sealed.key_id) AS kek_id
FROM events e, LATERAL (SELECT (e.payload #>> '{sealed,key_id}')::uuid AS key_id) AS sealed;

-- The patients read model shows an erased patient as erased: no date of birth, names "[erased]".
ALTER TABLE patients ALTER COLUMN date_of_birth DROP NOT NULL;
ALTER TABLE patients ADD COLUMN erased boolean NOT NULL DEFAULT false;

-- Keys are created by appends, locked (FOR SHARE) by appends, destroyed by `forget` (which the
-- admin HTTP endpoint runs as the app); KEKs are registered at start.
GRANT SELECT, INSERT, UPDATE ON patient_keys TO intake_app;
GRANT SELECT, INSERT ON key_encryption_keys TO intake_app;
GRANT SELECT ON event_rows TO intake_app;
