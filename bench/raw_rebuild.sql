-- The rebuild benchmark's baseline (bench/rebuild.py): the three read models built by PostgreSQL
-- alone, set-based, from the events table: no Python, no fold, no client round trips. Scratch
-- tables have the live tables' columns, constraints and indexes (LIKE … INCLUDING ALL), as the
-- rebuild's shadow tables do, so both pay for the same index maintenance. Unlike the rebuild it
-- writes no checkpoints and ignores failures and version-1 upcasting: it is a floor, not a rival.
-- The generated log is sealed as the service writes it (docs/PRIVACY.md) and SQL has no key: the
-- baseline fills the patients' personal columns with the envelope's ciphertext (the same bytes to
-- move), where the rebuild decrypts; `check` compares patients on their other columns.

-- name: prepare
-- Not timed.
DROP SCHEMA IF EXISTS bench_raw CASCADE;
CREATE SCHEMA bench_raw;
CREATE TABLE bench_raw.patients (LIKE public.patients INCLUDING ALL);
CREATE TABLE bench_raw.consultations (LIKE public.consultations INCLUDING ALL);
CREATE TABLE bench_raw.approvals (LIKE public.approvals INCLUDING ALL);

-- name: build
-- Timed, as one transaction. A consultation's latest state: its submission, and the last decision
-- naming it (DISTINCT ON … ORDER BY position DESC); a patient's details: their submission with the
-- highest position.
CREATE TEMP TABLE latest_decision ON COMMIT DROP AS
SELECT DISTINCT ON (payload ->> 'consultation_id')
       payload ->> 'consultation_id' AS consultation_id, stream_version, payload
FROM events
WHERE event_type = 'consult.decided'
ORDER BY payload ->> 'consultation_id', position DESC;

INSERT INTO bench_raw.consultations
SELECT (s.payload ->> 'consultation_id')::uuid, s.business_id, (s.payload ->> 'submission_id')::uuid,
       (s.payload ->> 'patient_id')::uuid, s.payload ->> 'customer_id', s.payload ->> 'product_id',
       coalesce(d.payload ->> 'decision', 'pending'), (s.payload ->> 'submitted_at')::timestamptz,
       (d.payload ->> 'decided_at')::timestamptz, d.payload ->> 'decision', d.payload ->> 'reason',
       d.payload ->> 'clinician_id', s.stream_id, coalesce(d.stream_version, s.stream_version), s.position,
       s.payload -> 'consent' ->> 'document_version', (s.payload -> 'consent' ->> 'accepted_at')::timestamptz
FROM events s
LEFT JOIN latest_decision d ON d.consultation_id = s.payload ->> 'consultation_id'
WHERE s.event_type = 'consult.submitted';

INSERT INTO bench_raw.approvals
SELECT (s.payload ->> 'consultation_id')::uuid, s.business_id, s.payload ->> 'customer_id',
       s.payload ->> 'product_id', coalesce(d.payload ->> 'decision', 'pending'),
       (s.payload ->> 'submitted_at')::timestamptz, (d.payload ->> 'decided_at')::timestamptz,
       d.payload ->> 'clinician_id', s.position
FROM events s
LEFT JOIN latest_decision d ON d.consultation_id = s.payload ->> 'consultation_id'
WHERE s.event_type = 'consult.submitted';

INSERT INTO bench_raw.patients
SELECT DISTINCT ON (business_id, payload ->> 'patient_id')
       business_id, (payload ->> 'patient_id')::uuid, payload ->> 'customer_id',
       coalesce(payload -> 'patient' ->> 'first_name', payload #>> '{sealed,ciphertext}'),
       coalesce(payload -> 'patient' ->> 'last_name', payload #>> '{sealed,key_id}'),
       coalesce(payload -> 'patient' ->> 'email', payload #>> '{sealed,key_id}'), payload -> 'patient' ->> 'phone',
       (payload -> 'patient' ->> 'date_of_birth')::date, position, (payload ->> 'submitted_at')::timestamptz, false
FROM events
WHERE event_type = 'consult.submitted'
ORDER BY business_id, payload ->> 'patient_id', position DESC;

-- name: check
-- Not timed: the baseline built what the rebuild built. Per table: live rows, baseline rows, and
-- rows of each not in the other (0 and 0 when the two are equal, row for row).
SELECT string_agg(format('%s %s/%s rows, %s/%s differing', t, l, r, ld, rd), '; ' ORDER BY t)
FROM (
    SELECT 'consultations' AS t, (SELECT count(*) FROM public.consultations) AS l,
           (SELECT count(*) FROM bench_raw.consultations) AS r,
           (SELECT count(*) FROM (TABLE public.consultations EXCEPT TABLE bench_raw.consultations) x) AS ld,
           (SELECT count(*) FROM (TABLE bench_raw.consultations EXCEPT TABLE public.consultations) x) AS rd
    UNION ALL
    SELECT 'approvals', (SELECT count(*) FROM public.approvals), (SELECT count(*) FROM bench_raw.approvals),
           (SELECT count(*) FROM (TABLE public.approvals EXCEPT TABLE bench_raw.approvals) x),
           (SELECT count(*) FROM (TABLE bench_raw.approvals EXCEPT TABLE public.approvals) x)
    UNION ALL
    SELECT 'patients', (SELECT count(*) FROM public.patients), (SELECT count(*) FROM bench_raw.patients),
           (SELECT count(*) FROM (SELECT business_id, patient_id, customer_id, source_position, updated_at
                                  FROM public.patients EXCEPT
                                  SELECT business_id, patient_id, customer_id, source_position, updated_at
                                  FROM bench_raw.patients) x),
           (SELECT count(*) FROM (SELECT business_id, patient_id, customer_id, source_position, updated_at
                                  FROM bench_raw.patients EXCEPT
                                  SELECT business_id, patient_id, customer_id, source_position, updated_at
                                  FROM public.patients) x)
) counts;

-- name: drop
DROP SCHEMA IF EXISTS bench_raw CASCADE;
