-- How far the reconciliation sweep has verified each projection: every event before
-- (tx_id, position), in the commit-safe order of events_tx_position, is applied by
-- the projection or parked for it. The sweep, `intake projections status` and the lag
-- gauges look only at events after it, so they cost the events since the last sweep
-- plus the lag, not the size of the log.
CREATE TABLE projection_floors (
    projection text PRIMARY KEY,
    tx_id      xid8 NOT NULL,
    position   bigint NOT NULL,
    moved_at   timestamptz NOT NULL DEFAULT now()
);
