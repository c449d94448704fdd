"""The admin API for outbound webhooks: admin keys only; endpoints registered, listed, rotated and
disabled; deliveries and their attempts listed and redelivered; and the metrics that report them."""

from __future__ import annotations

import uuid

from service import admin
from tests.support.consults import submit
from tests.support.reads import api, assert_problem
from tests.support.receiver import Receiver, receiving
from tests.support.supervision import eventually
from tests.support.webhooks import compressed, delivering

HOOKS = "/v1/businesses/acme/webhooks"


async def test_admin_keys_manage_endpoints_and_business_keys_cannot(settings, tenant, db):
    local = compressed(settings)
    root = {"Authorization": f"Bearer {(await admin.create_key(db, business=None, scopes=[], admin=True)).key}"}
    async with api(local) as client:
        forbidden = await client.get(HOOKS, headers={"Authorization": f"Bearer {tenant.key}"})
        made = await client.post(HOOKS, headers=root, json={"url": "http://127.0.0.1:9/h", "events": ["consult.approved"]})
        assert made.status_code == 201, made.text
        endpoint_id, secret = made.json()["endpoint_id"], made.json()["secret"]
        listed = (await client.get(HOOKS, headers=root)).json()["items"]
        rotated = await client.post(f"{HOOKS}/{endpoint_id}/rotate-secret", headers=root)
        disabled = await client.post(f"{HOOKS}/{endpoint_id}/disable", headers=root)
        after = (await client.get(HOOKS, headers=root)).json()["items"]
        refused = await client.post(HOOKS, headers=root, json={"url": "http://10.0.0.1/h", "events": ["consult.approved"]})
        unknown_type = await client.post(HOOKS, headers=root, json={"url": "http://127.0.0.1:9/h", "events": ["x"]})
        missing = await client.post(f"{HOOKS}/{uuid.uuid4()}/disable", headers=root)
        no_delivery = await client.post(f"{HOOKS}/deliveries/12345/redeliver", headers=root)
    assert_problem(forbidden, 403, "forbidden")
    assert secret.startswith("whsec_") and all(secret not in str(item) for item in listed)
    assert [(i["endpoint_id"], i["url"], i["events"], i["disabled_at"]) for i in listed] == [
        (endpoint_id, "http://127.0.0.1:9/h", ["consult.approved"], None)]
    assert rotated.status_code == 200 and rotated.json()["secret"] not in (secret, None)
    assert disabled.status_code == 200 and after[0]["disabled_at"] is not None
    assert "private, loopback or link-local" in assert_problem(refused, 422, "webhook-refused")["detail"]
    assert assert_problem(unknown_type, 422, "validation-failed")["errors"][0]["field"].startswith("events")
    assert_problem(missing, 404, "not-found")
    assert_problem(no_delivery, 404, "not-found")


async def test_deliveries_are_listed_redelivered_and_counted_in_the_metrics(settings, tenant, db):
    fast = compressed(settings)
    root = {"Authorization": f"Bearer {(await admin.create_key(db, business=None, scopes=[], admin=True)).key}"}
    receiver = Receiver(lambda path, nth: 200 if nth > 1 else 500)
    async with receiving(receiver), api(fast) as client:
        made = await client.post(HOOKS, headers=root, json={"url": receiver.url + "/h", "events": ["consult.submitted"]})
        assert made.status_code == 201, made.text
        async with delivering(fast):
            sent = await submit(client, tenant)
            await eventually(lambda: db.fetchval("SELECT state = 'delivered' FROM webhook_deliveries"), 20, "delivery")
            [delivery] = (await client.get(f"{HOOKS}/deliveries", headers=root)).json()["items"]
            again = await client.post(f"{HOOKS}/deliveries/{delivery['id']}/redeliver", headers=root)
            await eventually(lambda: len(receiver.received) == 3, 20, "the redelivery")
            await eventually(lambda: db.fetchval("SELECT state = 'delivered' FROM webhook_deliveries"), 20, "settled")
        failed_only = (await client.get(f"{HOOKS}/deliveries?failed=true", headers=root)).json()["items"]
        bad_flag = await client.get(f"{HOOKS}/deliveries?failed=maybe", headers=root)
        metrics = (await client.get("/metrics")).text
    assert (delivery["event_id"], delivery["state"]) == (sent["event_id"], "delivered")
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]
    assert again.json() == {"redelivered": [delivery["id"]]} and failed_only == []
    assert {r.webhook_id for r in receiver.received} == {sent["event_id"]}
    assert_problem(bad_flag, 400, "invalid-parameter")
    assert 'intake_webhook_deliveries{state="delivered"} 1.0' in metrics
    assert 'intake_webhook_deliveries{state="dead"} 0.0' in metrics
    assert "intake_webhook_failed_attempts 1.0" in metrics
    assert "intake_webhook_delivery_lag_seconds 0.0" in metrics
