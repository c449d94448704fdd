-- Outbound webhooks: endpoints a business registers, and the deliveries of its events to them.
--
-- Deliveries hold identifiers (the event's id and position), never an event's payload: the body is
-- built from the log at send time with identifiers, types, times, statuses and decisions only, so
-- this table holds no patient data to encrypt or erase (docs/WEBHOOKS.md).

CREATE TABLE webhook_endpoints (
    id              uuid PRIMARY KEY,
    business_id     bigint NOT NULL REFERENCES businesses (id),
    url             text NOT NULL CHECK (length(url) <= 2000),
    event_types     text[] NOT NULL CHECK (cardinality(event_types) > 0),
    -- Encrypted with SECRETS_KEY (projections/secretbox.py); the previous secret keeps signing
    -- beside the new one until previous_until, so a receiver can switch without missing a delivery.
    sealed_secret   bytea NOT NULL,
    previous_sealed bytea,
    previous_until  timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz
);
CREATE INDEX webhook_endpoints_by_business ON webhook_endpoints (business_id) WHERE disabled_at IS NULL;

-- How far the fan-out has followed the log, in read_all's commit-safe (tx_id, position) order.
CREATE TABLE webhook_cursor (
    name     text PRIMARY KEY,
    tx_id    xid8 NOT NULL,
    position bigint NOT NULL
);

CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    endpoint_id     uuid NOT NULL REFERENCES webhook_endpoints (id),
    business_id     bigint NOT NULL,
    event_id        uuid NOT NULL,   -- the webhook-id: stable across retries and redeliveries
    event_position  bigint NOT NULL,
    webhook_type    text NOT NULL,   -- consult.submitted, consult.approved, …
    committed_at    timestamptz NOT NULL,  -- the event's recorded_at: delivery lag is measured from it
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    budget_from     integer NOT NULL DEFAULT 0,  -- `redeliver` gives a dead delivery a new schedule
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    CONSTRAINT webhook_deliveries_once UNIQUE (endpoint_id, event_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_business ON webhook_deliveries (business_id, id);

-- Every attempt: what came back (status, or the error's type, never a body), how long, what next.
CREATE TABLE webhook_attempts (
    delivery_id     bigint NOT NULL REFERENCES webhook_deliveries (id),
    attempt         integer NOT NULL,
    attempted_at    timestamptz NOT NULL,
    status_code     integer,
    latency_ms      integer NOT NULL,
    error           text,
    next_attempt_at timestamptz,
    PRIMARY KEY (delivery_id, attempt)
);

-- The worker (app role) fans out, claims, records; the admin HTTP API (app role, admin keys only)
-- registers, disables and rotates endpoints and redelivers. Nothing is ever deleted.
GRANT SELECT, INSERT, UPDATE ON webhook_endpoints, webhook_cursor, webhook_deliveries TO intake_app;
GRANT SELECT, INSERT ON webhook_attempts TO intake_app;
