"""`intake partners …` and `intake webhooks …` as an operator runs them: secrets printed once and
stored encrypted, listings without secrets, refusals as one line with exit 1; nothing runs without
SECRETS_KEY (there is no default)."""

from __future__ import annotations

import re

import pytest

from tests.support.servers import free_port
from tests.support.webhooks import compressed, intake_cli

SECRET = re.compile(r"^(whsec_[A-Za-z0-9+/=]+)$", re.MULTILINE)
SECRET_ID = re.compile(r"secret ([0-9a-f-]{36})")


async def test_partners_are_added_rotated_listed_and_their_old_secret_removed(settings, tenant, db):
    added = await intake_cli(settings, "partners", "add", "pharmacy", "--business", "acme")
    rotated = await intake_cli(settings, "partners", "rotate", "pharmacy", "--business", "acme")
    assert added.returncode == rotated.returncode == 0, added.stderr + rotated.stderr
    [first], [second] = SECRET.findall(added.stdout), SECRET.findall(rotated.stdout)
    stored = b"".join(r["sealed"] for r in await db.fetch("SELECT sealed FROM partner_secrets"))
    assert first.encode() not in stored and first[6:].encode() not in stored  # encrypted at rest
    listing = await intake_cli(settings, "partners", "list", "--business", "acme")
    old_id = SECRET_ID.search(added.stdout)[1]
    assert old_id in listing.stdout and first not in listing.stdout and second not in listing.stdout
    removed = await intake_cli(settings, "partners", "remove", "pharmacy", "--business", "acme", "--secret", old_id)
    assert removed.returncode == 0 and await db.fetchval("SELECT count(*) FROM partner_secrets") == 1
    last_id = SECRET_ID.search(rotated.stdout)[1]
    refused = await intake_cli(settings, "partners", "remove", "pharmacy", "--business", "acme", "--secret", last_id)
    assert refused.returncode == 1 and refused.stderr.startswith("intake: error: that is the partner's last secret")


async def test_webhook_endpoints_are_added_listed_rotated_and_disabled_and_bad_urls_refused(settings, tenant, db):
    local = compressed(settings)
    added = await intake_cli(local, "webhooks", "add", "--business", "acme", "--url", "http://127.0.0.1:9/hooks",
                             "--events", "consult.approved,consult.rejected")
    assert added.returncode == 0, added.stderr
    endpoint_id = SECRET_ID.search(added.stdout.replace("endpoint ", "secret ", 1))[1]
    listing = await intake_cli(local, "webhooks", "list", "--business", "acme")
    assert f"{endpoint_id}\tacme\thttp://127.0.0.1:9/hooks\tconsult.approved,consult.rejected\tenabled" in listing.stdout
    rotated = await intake_cli(local, "webhooks", "rotate-secret", endpoint_id)
    assert rotated.returncode == 0 and SECRET.findall(rotated.stdout) != SECRET.findall(added.stdout)
    assert await db.fetchval("SELECT previous_until > now() FROM webhook_endpoints")
    disabled = await intake_cli(local, "webhooks", "disable", endpoint_id)
    assert disabled.returncode == 0 and "disabled" in (await intake_cli(local, "webhooks", "list")).stdout
    for url, why in (("http://127.0.0.1:9/x", "private, loopback or link-local"),  # loopback not allowed here
                     ("http://169.254.169.254/latest", "private, loopback or link-local"),
                     ("ftp://example.com/x", "must be https or http")):
        refused = await intake_cli(settings, "webhooks", "add", "--business", "acme", "--url", url,
                                   "--events", "consult.approved")
        assert refused.returncode == 1 and why in refused.stderr, (url, refused.stderr)
    unknown = await intake_cli(local, "webhooks", "add", "--business", "acme", "--url", "http://127.0.0.1:9/x",
                               "--events", "consult.decided")
    assert unknown.returncode == 1 and "events must be some of" in unknown.stderr
    missing = await intake_cli(local, "webhooks", "redeliver", "999")
    assert missing.returncode == 1 and missing.stderr.strip() == "intake: error: No such webhook endpoint or delivery."


@pytest.mark.parametrize("secrets_key", ["", "bm90IDMyIGJ5dGVz"])  # missing; base64 of 12 bytes
async def test_nothing_that_uses_secrets_starts_without_a_usable_secrets_key(settings, tenant, db, secrets_key):
    before = await db.fetchval("SELECT count(*) FROM partner_secrets")
    env = {"SECRETS_KEY": secrets_key, "SECRETS_KEY_FILE": ""}
    for command in (("partners", "add", "lab", "--business", "acme"), ("serve", "--port", str(free_port())),
                    ("worker",)):
        done = await intake_cli(settings, *command, env=env)
        assert done.returncode != 0, command
        assert "SECRETS_KEY (or SECRETS_KEY_FILE) must hold 32 random bytes" in done.stderr, done.stderr[-2000:]
        assert "Traceback" not in done.stderr
    assert await db.fetchval("SELECT count(*) FROM partner_secrets") == before
