-- The two tables the raw and naive baselines write: the same column shapes as the
-- service's own events and outbox tables, with none of its other machinery.
CREATE TABLE events (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id uuid NOT NULL UNIQUE,
    stream_id text NOT NULL,
    stream_version integer NOT NULL,
    event_type text NOT NULL,
    schema_version smallint NOT NULL,
    business_id bigint NOT NULL,
    idempotency_key text,
    request_fingerprint bytea,
    payload jsonb NOT NULL,
    metadata jsonb NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    tx_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
    UNIQUE (stream_id, stream_version),
    UNIQUE (business_id, idempotency_key)
);

CREATE TABLE outbox (
    position bigint PRIMARY KEY,
    stream_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
