-- Every event that names a consultation, in log order: a consultation's history
-- (GET …/consultations/{id}/history), `intake events replay --consultation` and as-of
-- reads walk this index instead of the whole log. 0001's events_consultation_id covers
-- only submissions (how decisions find a consultation's stream); decisions and
-- deduplicated submissions name the consultation too.
-- Plain CREATE INDEX, not CONCURRENTLY: migrations run in a transaction. The build holds
-- a SHARE lock on events (appends wait) for as long as it takes on a large log.
CREATE INDEX events_by_consultation ON events ((payload ->> 'consultation_id'), position);
