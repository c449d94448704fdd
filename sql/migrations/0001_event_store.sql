-- The event log is the only source of truth. Everything else is derived from it
-- or is configuration (businesses, API keys) that is never written on the request path.

CREATE TABLE businesses (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug       text NOT NULL CONSTRAINT businesses_slug_key UNIQUE
               CONSTRAINT businesses_slug_format CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    name       text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_keys (
    id          uuid PRIMARY KEY,
    -- SHA-256 of a 256-bit random secret: a slow hash buys nothing for keys
    -- that cannot be guessed, and the lookup must be a single index probe.
    key_hash    bytea NOT NULL CONSTRAINT api_keys_key_hash_key UNIQUE,
    business_id bigint REFERENCES businesses (id),
    is_admin    boolean NOT NULL DEFAULT false,
    scopes      text[] NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    CONSTRAINT api_keys_bound CHECK (is_admin OR business_id IS NOT NULL)
);

CREATE TABLE events (
    position            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id            uuid NOT NULL,
    stream_id           text NOT NULL,
    stream_version      integer NOT NULL CHECK (stream_version > 0),
    event_type          text NOT NULL,
    schema_version      smallint NOT NULL CHECK (schema_version > 0),
    -- No foreign key to businesses on purpose: businesses are never deleted, and
    -- an FK would take a KEY SHARE lock on the tenant's row for every append,
    -- turning a busy tenant into a MultiXact hot spot.
    business_id         bigint NOT NULL,
    idempotency_key     text,
    request_fingerprint bytea,
    payload             jsonb NOT NULL,
    metadata            jsonb NOT NULL,
    recorded_at         timestamptz NOT NULL DEFAULT now(),
    -- The committing transaction, so that global readers can stop below the
    -- oldest transaction still in flight instead of passing over positions
    -- that commit later (see sql/queries/events.sql: read_all).
    tx_id               xid8 NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_event_id_key UNIQUE (event_id),
    -- Optimistic concurrency: two writers that read the same stream version
    -- cannot both append after it.
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, stream_version),
    -- Idempotency keys never expire: they live on the immutable event.
    CONSTRAINT events_idempotency_key UNIQUE (business_id, idempotency_key),
    CONSTRAINT events_idempotency_pair CHECK ((idempotency_key IS NULL) = (request_fingerprint IS NULL))
);

CREATE INDEX events_tx_position ON events (tx_id, position);
-- Decisions address a consultation by id before any projection has run.
CREATE INDEX events_consultation_id ON events ((payload ->> 'consultation_id'))
    WHERE event_type = 'consult.submitted';

CREATE FUNCTION events_are_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_no_update_delete BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION events_are_immutable();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION events_are_immutable();
-- ALWAYS: the triggers fire even with session_replication_role = replica,
-- which would otherwise let a superuser session bypass them silently.
ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_update_delete;
ALTER TABLE events ENABLE ALWAYS TRIGGER events_no_truncate;

-- One row per appended event, written in the event's own transaction; the relay
-- deletes a row once its job is safely enqueued.
CREATE TABLE outbox (
    position     bigint PRIMARY KEY,
    stream_id    text NOT NULL,
    tx_id        xid8 NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    attempts     integer NOT NULL DEFAULT 0,
    available_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_available ON outbox (available_at, position);
