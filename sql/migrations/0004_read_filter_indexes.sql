-- An index for each filter of the read API, so that a filter costs the page it
-- returns rather than a walk of the tenant's rows: a status no row has used to
-- scan every consultation of the business (issue 9, finding 8). Each index ends in
-- the list's keyset order (position, consultation_id), so the scan starts at the
-- cursor and stops after the page. tests/integration/test_read_indexes.py holds
-- the plans to that.
--
-- Status joins the indexed columns, so a decision's status change is no longer a
-- HOT update: the price of filtering by it.
--
-- Plain CREATE INDEX, not CONCURRENTLY: migrations run in a transaction. The build
-- holds off projector writes (not reads) while it runs, seconds for a million rows.

-- reads.sql: consultations_in_status
CREATE INDEX consultations_by_status ON consultations (business_id, status, position, consultation_id);

-- reads.sql: consultations_of_customer_in_status. consultations_by_customer stays:
-- an unfiltered customer list needs position order across statuses.
CREATE INDEX consultations_by_customer_status
    ON consultations (business_id, customer_id, status, position, consultation_id);
