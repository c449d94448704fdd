"""The application's login role: the user DATABASE_URL names, created or updated by the owner
(`intake migrate`, `intake dev`) as a member of intake_app, whose grants migration 0005 sets.

The app role may append to and read the log but not change it; it owns nothing, so it cannot
ALTER a table (or disable the log's triggers). Its password reaches the server only as a SCRAM
verifier and is never printed."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import parse_qs, parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

import asyncpg

from service import scram

APP_GROUP = "intake_app"  # created by sql/migrations/0005_app_role.sql
# Whether a role could change the log, by any path: superuser; owner of a table, or a member of the
# log's owner (SET ROLE, then ALTER TABLE … DISABLE TRIGGER); or UPDATE, DELETE or TRUNCATE on it,
# granted directly or through a role such as pg_write_all_data (TRUNCATE skips the row triggers).
_PRIVILEGED = """
SELECT r.rolsuper
       OR EXISTS (SELECT FROM pg_class WHERE relowner = r.oid)
       OR pg_has_role(r.oid, log.relowner, 'MEMBER')
       OR has_table_privilege(r.oid, log.oid, 'UPDATE, DELETE, TRUNCATE') AS privileged
FROM pg_roles r, pg_class log
WHERE r.rolname = $1 AND log.oid = 'events'::regclass
"""
Action = Literal["created", "updated", "is_owner", "privileged", "unnamed"]


@dataclass(frozen=True, slots=True)
class Login:
    """A connection URL's user and password."""

    user: str | None
    password: str | None = field(repr=False)


@dataclass(frozen=True, slots=True)
class LoginRole:
    """What provisioning did with DATABASE_URL's user."""

    name: str | None
    action: Action

    @property
    def confined(self) -> bool:
        """Whether the app now connects with intake_app's grants and nothing more."""
        return self.action in ("created", "updated")

    def describe(self) -> str:
        """One line for an operator; a warning when the app is not confined."""
        hint = "give DATABASE_URL a user of its own and OWNER_DATABASE_URL the owner's"
        return {
            "created": f"created login role {self.name} (member of {APP_GROUP})",
            "updated": f"login role {self.name} is a member of {APP_GROUP}; its password is DATABASE_URL's",
            "is_owner": f"warning: DATABASE_URL connects as the owner, {self.name}: the app runs with owner "
                        f"rights and could alter the event log; {hint}",
            "privileged": f"warning: DATABASE_URL's user {self.name} is a superuser, owns tables or may change the "
                          f"event log (its owner's member, or UPDATE, DELETE or TRUNCATE on it), so the app "
                          f"could alter the event log; left unchanged: {hint}",
            "unnamed": "warning: DATABASE_URL names no user: no login role provisioned",
        }[self.action]


def login_of(url: str) -> Login:
    """The user and password of a libpq URL (`user:password@` or `?user=…&password=…`), decoded."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    user = unquote(parts.username) if parts.username else (query.get("user") or [None])[0]
    password = unquote(parts.password) if parts.password is not None else (query.get("password") or [None])[0]
    return Login(user or None, password)


def with_login(url: str, user: str, password: str | None) -> str:
    """`url` connecting as `user` (percent-encoded, like the password)."""
    parts = urlsplit(url)
    userinfo = quote(user, safe="") + ("" if password is None else ":" + quote(password, safe=""))
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc.rpartition('@')[2]}"))


def redacted(url: str) -> str:
    """`url` with its password, if any, replaced by ***, for printing."""
    parts = urlsplit(url)
    query = [(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    netloc = parts.netloc
    if parts.password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="*")))


async def provision(conn: asyncpg.Connection, app_url: str) -> LoginRole:
    """Create or update `app_url`'s user as a member of intake_app; `conn` is the owner's. Safe to rerun."""
    login = login_of(app_url)
    if login.user is None:
        return LoginRole(None, "unnamed")
    if login.user == await conn.fetchval("SELECT current_user"):
        return LoginRole(login.user, "is_owner")
    existing = await conn.fetchrow(_PRIVILEGED, login.user)
    if existing is not None and existing["privileged"]:
        return LoginRole(login.user, "privileged")  # never demoted behind an operator's back
    try:
        await _create_or_alter(conn, login, exists=existing is not None)
    except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
        await _create_or_alter(conn, login, exists=True)  # another migrate created it since we looked
    return LoginRole(login.user, "updated" if existing is not None else "created")


async def _create_or_alter(conn: asyncpg.Connection, login: Login, *, exists: bool) -> None:
    # DDL takes no bind parameters, so the statement is built by format() on the server, which
    # quotes the name (%I) and the verifier (%L); the plaintext password is never sent.
    statement = ("ALTER ROLE %I LOGIN" if exists else
                 "CREATE ROLE %I LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
    password = None if login.password is None else scram.verifier(login.password)
    async with conn.transaction():
        if password is not None or not exists:
            template = statement if password is None else statement + " PASSWORD %L"
            await conn.execute(await conn.fetchval("SELECT format($1::text, $2::text, $3::text)",
                                                   template, login.user, password))
        await conn.execute(await conn.fetchval("SELECT format('GRANT %I TO %I', $1::text, $2::text)",
                                               APP_GROUP, login.user))
