-- The append statement (sql/queries/events.sql, append_events) runs as a transaction of its own:
-- no BEGIN and COMMIT round trips around each group-commit batch, and no transaction left open
-- while the appending process gets round to sending COMMIT (it held back every global reader's
-- horizon: the projectors' sweep, the webhooks' fan-out). Such a statement can no longer be rolled
-- back by its caller after a look at what it inserted, so it aborts itself when one request's
-- events were only partly inserted (some skipped by a conflict, others not): this raises, and the
-- statement, with everything it wrote, is undone. PUBLIC may execute it (the default): raising is
-- all it does.
CREATE FUNCTION append_partial_request() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'some of one request''s events were skipped and others inserted'
        USING ERRCODE = 'IK001';
END;
$$;
