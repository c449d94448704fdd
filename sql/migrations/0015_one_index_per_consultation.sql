-- Every submission was indexed by its consultation id twice: by 0001's events_consultation_id
-- (submissions only) and by 0008's events_by_consultation (every event naming a consultation, with
-- its position). The second answers everything the first did (stream_of_consultation: a
-- consultation has a handful of events, filtered by type and business after the index probe), so
-- each append paid for a B-tree insertion at a random leaf, and its WAL, for nothing.
DROP INDEX events_consultation_id;
