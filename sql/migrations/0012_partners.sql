-- Partners (pharmacies, labs, telehealth providers) report status changes by signed callbacks
-- (Standard Webhooks). A partner belongs to one business and has one or more signing secrets at
-- once, so it can rotate: the new secret is added, both verify, the old one is removed when the
-- partner has switched. Configuration, written by the admin commands as the owner; the API only
-- reads it (a compromised API cannot add itself a partner).
CREATE TABLE partners (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    business_id bigint NOT NULL REFERENCES businesses (id),
    name        text NOT NULL CONSTRAINT partners_name_format CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT partners_one_name_per_business UNIQUE (business_id, name)
);

-- Encrypted with SECRETS_KEY (projections/secretbox.py), never hashed: verifying an HMAC needs the
-- key itself. The row id is the cipher's associated data, so a ciphertext copied to another row fails.
CREATE TABLE partner_secrets (
    id         uuid PRIMARY KEY,
    partner_id bigint NOT NULL REFERENCES partners (id) ON DELETE CASCADE,
    sealed     bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX partner_secrets_by_partner ON partner_secrets (partner_id, created_at);

GRANT SELECT ON partners, partner_secrets TO intake_app;

-- The consultation read model shows the latest status a partner reported (partner.status_reported):
-- NULL until one reports. The table's grants (0005) cover new columns.
ALTER TABLE consultations
    ADD COLUMN partner            text,
    ADD COLUMN partner_status     text,
    ADD COLUMN partner_status_at  timestamptz,
    ADD CONSTRAINT consultations_partner_status_whole
        CHECK ((partner IS NULL) = (partner_status IS NULL) AND (partner IS NULL) = (partner_status_at IS NULL));
