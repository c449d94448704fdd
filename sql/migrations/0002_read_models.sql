-- Read models: derived from the log by the projector workers, rebuildable from it,
-- never written on the request path. Unique indexes are a second line of defence
-- behind the projector's own per-stream ordering.

CREATE TABLE patients (
    business_id     bigint NOT NULL,
    patient_id      uuid NOT NULL,
    customer_id     text NOT NULL,
    first_name      text NOT NULL,
    last_name       text NOT NULL,
    email           text NOT NULL,
    phone           text,
    date_of_birth   date NOT NULL,
    -- Details come from the submission with the highest log position, whatever
    -- order different slots' streams happen to be projected in.
    source_position bigint NOT NULL,
    updated_at      timestamptz NOT NULL,  -- when that submission was made
    PRIMARY KEY (business_id, patient_id),
    CONSTRAINT patients_one_per_customer UNIQUE (business_id, customer_id)
);

CREATE TABLE consultations (
    consultation_id uuid PRIMARY KEY,
    business_id     bigint NOT NULL,
    submission_id   uuid NOT NULL CONSTRAINT consultations_one_per_submission UNIQUE,
    patient_id      uuid NOT NULL,
    customer_id     text NOT NULL CHECK (length(customer_id) <= 128),
    product_id      text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    submitted_at    timestamptz NOT NULL,
    decided_at      timestamptz,
    decision        text,
    reason          text,
    clinician_id    text,
    stream_id       text NOT NULL,
    version         integer NOT NULL,  -- the stream version of the last event applied
    position        bigint NOT NULL    -- the submission's log position: the list order
);
CREATE INDEX consultations_by_business ON consultations (business_id, position);
CREATE INDEX consultations_by_customer ON consultations (business_id, customer_id, position);

CREATE TABLE approvals (
    consultation_id uuid PRIMARY KEY,
    business_id     bigint NOT NULL,
    customer_id     text NOT NULL,
    product_id      text NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'approved', 'rejected')),
    requested_at    timestamptz NOT NULL,
    decided_at      timestamptz,
    clinician_id    text,
    position        bigint NOT NULL
);
CREATE UNIQUE INDEX approvals_one_pending_per_slot ON approvals (business_id, customer_id, product_id)
    WHERE status = 'pending';
CREATE INDEX approvals_by_business ON approvals (business_id, status, position);

-- How far each projection has applied each stream. Written in the same
-- transaction as the rows it covers, so a crash never leaves rows without it.
CREATE TABLE projection_checkpoints (
    projection text NOT NULL,
    stream_id  text NOT NULL,
    version    integer NOT NULL,
    position   bigint NOT NULL,  -- the log position of the last applied event
    applied_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, stream_id)
);

-- A stream whose projection keeps failing is parked here (per projection), so it
-- stops retrying and stops nothing else; `intake projections retry` un-parks it.
CREATE TABLE projection_failures (
    projection text NOT NULL,
    stream_id  text NOT NULL,
    version    integer NOT NULL,  -- the event that fails
    position   bigint NOT NULL,
    attempts   integer NOT NULL,
    error      text NOT NULL,     -- exception type and constraint name only: never row data
    parked     boolean NOT NULL DEFAULT false,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (projection, stream_id)
);
