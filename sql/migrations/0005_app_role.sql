-- Least privilege (issue 9, finding 4). Migrations run as the schema's owner; the API, the
-- workers and the everyday commands connect as a login role that is a member of intake_app
-- (created by `intake migrate`, service/roles.py), which owns nothing and holds only these
-- grants. Only an owner may ALTER a table, so the app's own connection can no longer disable
-- the log's triggers, and without UPDATE, DELETE or TRUNCATE it could not use them anyway.
--
-- A table added by a later migration gets nothing until that migration grants it:
-- tests/integration/test_least_privilege.py compares every table's grants with its list.

-- Roles belong to the cluster, not the database: another database may have created it. The
-- owner needs CREATEROLE, or a DBA creates intake_app beforehand (and gives the owner ADMIN
-- on it, so `intake migrate` can make the login role a member).
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'intake_app') THEN
        CREATE ROLE intake_app NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- a migration of another database of the cluster created it first
END;
$$;

-- Schema public: PUBLIC keeps USAGE and, since PostgreSQL 15, no longer has CREATE, so the
-- app role can neither create nor (owning nothing) drop anything there.

-- The log: appended and read, never changed. Identity columns need no sequence grant.
GRANT SELECT, INSERT ON events TO intake_app;
-- Written with each append; claimed (FOR UPDATE), deferred and deleted by the relay.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO intake_app;
-- Read models: upserted by the projector (ON CONFLICT DO UPDATE), read by the API.
GRANT SELECT, INSERT, UPDATE ON patients, consultations, approvals TO intake_app;
-- Checkpoints are created, locked (FOR UPDATE) and advanced, never deleted.
GRANT SELECT, INSERT, UPDATE ON projection_checkpoints TO intake_app;
-- Failures are cleared when a stream applies; floors are dropped when they no longer hold;
-- `projections retry` deletes both.
GRANT SELECT, INSERT, UPDATE, DELETE ON projection_failures, projection_floors TO intake_app;
-- Configuration, written only by the admin commands, which connect as the owner: a
-- compromised API must not be able to mint itself an admin key.
GRANT SELECT ON businesses, api_keys TO intake_app;
-- /readyz compares the applied migrations with the files.
GRANT SELECT ON schema_migrations TO intake_app;
