-- consult.submitted version 2 carries the telehealth consent the patient accepted; the
-- consultation read model shows it. Both columns are NULL for a consultation submitted
-- without consent, which includes every version-1 submission (events/upcasting.py reads
-- those with consent = null), so existing rows are already right and nothing is backfilled.
-- The table's grants (0005) cover new columns.
ALTER TABLE consultations
    ADD COLUMN consent_document_version text,
    ADD COLUMN consent_accepted_at      timestamptz,
    ADD CONSTRAINT consultations_consent_whole
        CHECK ((consent_document_version IS NULL) = (consent_accepted_at IS NULL));
