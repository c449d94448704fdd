-- Tamper evidence (issue 12; docs/INTEGRITY.md says how a third party recomputes all of this).
--
-- 1. A per-stream hash chain: hash = SHA-256(previous hash of the same stream || canonical bytes),
--    computed by a BEFORE INSERT trigger inside the appending transaction, so append_events is
--    unchanged and writers of different streams never wait for each other (the previous hash is
--    one probe of events_stream_version_key, whose row the writer's own concurrency check needs).
-- 2. Seals: signed RFC 9162 tree heads over the log in the global reader's order.
--
-- What is hashed is what is stored: payloads as stored (personal fields as ciphertext once they
-- are sealed per patient), so destroying a patient's key never breaks a chain.

-- One field: its length as 4 bytes big-endian, then its bytes; NULL is the length 0xFFFFFFFF and
-- nothing else, so no two different rows can give the same concatenation.
CREATE FUNCTION events_hash_field(value bytea) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN CASE WHEN value IS NULL THEN '\xffffffff'::bytea ELSE int4send(length(value)) || value END;

-- The canonical bytes of one event. Text as UTF-8; numbers as decimal text; recorded_at as integer
-- microseconds since the Unix epoch (exactly what timestamptz stores); jsonb as its text output,
-- which is a function of the jsonb value alone (keys sorted and deduplicated, fixed separators).
CREATE FUNCTION events_canonical(event_id uuid, stream_id text, stream_version integer, event_type text,
                                 schema_version smallint, business_id bigint, idempotency_key text,
                                 request_fingerprint bytea, payload jsonb, metadata jsonb,
                                 recorded_at timestamptz) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN '\x696e74616b652d6576656e742d7631'::bytea  -- 'intake-event-v1': the encoding's version
        || events_hash_field(convert_to(event_id::text, 'UTF8'))
        || events_hash_field(convert_to(stream_id, 'UTF8'))
        || events_hash_field(convert_to(stream_version::text, 'UTF8'))
        || events_hash_field(convert_to(event_type, 'UTF8'))
        || events_hash_field(convert_to(schema_version::text, 'UTF8'))
        || events_hash_field(convert_to(business_id::text, 'UTF8'))
        || events_hash_field(convert_to(idempotency_key, 'UTF8'))
        || events_hash_field(request_fingerprint)
        || events_hash_field(convert_to(payload::text, 'UTF8'))
        || events_hash_field(convert_to(metadata::text, 'UTF8'))
        || events_hash_field(convert_to(
               trunc(extract(epoch FROM recorded_at) * 1000000)::bigint::text, 'UTF8'));

CREATE FUNCTION events_link(prev bytea, e events) RETURNS bytea
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN sha256(prev || events_canonical(e.event_id, e.stream_id, e.stream_version, e.event_type,
                                           e.schema_version, e.business_id, e.idempotency_key,
                                           e.request_fingerprint, e.payload, e.metadata, e.recorded_at));

-- The previous event's hash. VOLATILE (plpgsql's default) on purpose: a row-level BEFORE trigger's
-- queries then see the rows the same INSERT wrote before this one, so a request that appends
-- versions n+1 and n+2 in one statement chains n+2 onto n+1.
CREATE FUNCTION events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    prev bytea;
BEGIN
    IF NEW.stream_version > 1 THEN
        SELECT hash INTO prev FROM events
        WHERE stream_id = NEW.stream_id AND stream_version = NEW.stream_version - 1;
    END IF;
    -- No predecessor: the first event, or a row that the group commit rolls back anyway (its
    -- request was only partly inserted); a gap left by hand is what verify reports as missing.
    NEW.hash := events_link(coalesce(prev, '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea), NEW);
    RETURN NEW;
END;
$$;

ALTER TABLE events ADD COLUMN hash bytea;

-- Recompute one stream's chain from its stored rows, in version order; returns the rows changed.
-- For an operator rewrite that is allowed to change stored rows (the one-time re-encryption of
-- old plaintext payloads, refused once any seal exists): it runs as the owner, in a transaction
-- that has switched events_no_update_delete off, as this migration does for the rows below.
CREATE FUNCTION events_rechain(target_stream text) RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    e events;
    prev bytea := '\x0000000000000000000000000000000000000000000000000000000000000000'::bytea;
    changed integer := 0;
BEGIN
    FOR e IN SELECT * FROM events WHERE stream_id = target_stream ORDER BY stream_version LOOP
        prev := events_link(prev, e);
        IF e.hash IS DISTINCT FROM prev THEN
            UPDATE events SET hash = prev WHERE position = e.position;
            changed := changed + 1;
        END IF;
    END LOOP;
    RETURN changed;
END;
$$;

-- Existing rows get their chain here, stream by stream in version order. The append-only trigger
-- is switched off for these UPDATEs, inside this migration's transaction, and back on before it
-- commits: nobody else ever sees it off.
ALTER TABLE events DISABLE TRIGGER events_no_update_delete;
SELECT events_rechain(stream_id) FROM (SELECT DISTINCT stream_id FROM events) AS streams;
ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_update_delete;
ALTER TABLE events ALTER COLUMN hash SET NOT NULL;
ALTER TABLE events ADD CONSTRAINT events_hash_length CHECK (length(hash) = 32);

CREATE TRIGGER events_chain BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION events_chain();
-- ALWAYS, like the append-only triggers: a replica-role session still gets its rows chained.
ALTER TABLE events ENABLE ALWAYS TRIGGER events_chain;

-- Seals: signed tree heads. Seal n covers the first tree_size events in (tx_id, position) order,
-- the order of the global reader (sql/queries/events.sql: read_all), because only that order makes
-- every seal a prefix of the next: a lower position may commit after a higher one.
CREATE TABLE seals (
    seal_no       bigint PRIMARY KEY CHECK (seal_no > 0),
    tree_size     bigint NOT NULL CHECK (tree_size >= 0),
    root_hash     bytea NOT NULL CHECK (length(root_hash) = 32),
    prev_seal     bytea NOT NULL CHECK (length(prev_seal) = 32),  -- SHA-256 of the previous seal's message
    sealed_at     timestamptz NOT NULL,
    key_id        text NOT NULL,
    signature     bytea NOT NULL CHECK (length(signature) = 64),
    -- Not signed: where the next seal resumes. The last sealed event's cursor and the tree's right
    -- edge (the roots of its perfect subtrees, left to right), so a seal costs O(new + log n).
    last_tx_id    xid8,
    last_position bigint,
    right_edge    bytea[] NOT NULL,
    CONSTRAINT seals_tree_size_key UNIQUE (tree_size)
);

CREATE FUNCTION seals_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'seals are append-only: % on seals is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER seals_no_update_delete BEFORE UPDATE OR DELETE ON seals
    FOR EACH ROW EXECUTE FUNCTION seals_are_immutable();
CREATE TRIGGER seals_no_truncate BEFORE TRUNCATE ON seals
    FOR EACH STATEMENT EXECUTE FUNCTION seals_are_immutable();
ALTER TABLE seals ENABLE ALWAYS TRIGGER seals_no_update_delete;
ALTER TABLE seals ENABLE ALWAYS TRIGGER seals_no_truncate;

-- The worker seals as the app role; seals are appended and read, never changed.
GRANT SELECT, INSERT ON seals TO intake_app;
