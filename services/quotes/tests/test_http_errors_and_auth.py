"""Auth (401 without a valid token, 403 without the role) and problem+json errors."""

import pytest

from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.testing import KafkaProbe, eventually, running, token
from procure_quotes.app import build
from procure_runtime.auth import make_token

pytestmark = pytest.mark.kafka


async def test_auth_and_problem_responses(service_settings) -> None:
    settings = service_settings("quotes")
    app, runtime = build(settings)
    won = f.opportunity_won(f.charge(f.product(procurement=False), 1))
    async with (
        running(app, runtime) as http,
        KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix) as kafka,
    ):
        await kafka.publish(spec_for_topic("opportunity.won"), won)
        product = f.product()
        await kafka.publish(spec_for_topic("catalog.products"), product)
        so_url = f"/sales-orders/{won.sales_order.id}"
        reader = {"Authorization": f"Bearer {token(settings, 'billing')}"}
        sales = {"Authorization": f"Bearer {token(settings, 'sales')}"}
        admin = {"Authorization": f"Bearer {token(settings, 'admin')}"}
        await eventually(lambda: _status(http.get(so_url, headers=reader), 200))

        no_token = await http.get(so_url)
        assert no_token.status_code == 401
        assert no_token.headers["content-type"].startswith("application/problem+json")
        assert no_token.headers["www-authenticate"] == "Bearer"
        assert "bearer token" in no_token.json()["detail"]

        forged = make_token(
            "not-the-secret-but-long-enough-for-hs256",
            sub="x",
            name="x",
            email="x@x",
            roles=["admin"],
        )
        assert (
            await http.get(so_url, headers={"Authorization": f"Bearer {forged}"})
        ).status_code == 401

        forbidden = await http.post(f"{so_url}/fulfill", headers=reader)
        assert forbidden.status_code == 403
        assert forbidden.json()["type"].endswith("forbidden")
        assert "sales" in forbidden.json()["detail"]
        assert (await http.get(so_url, headers=reader)).json()["status"] == "New"  # unchanged

        bad = await http.patch(so_url, headers=sales, json={"status": "Shipped"})
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")
        assert bad.json()["detail"]
        malformed = await http.patch(
            so_url,
            headers=sales,
            content=b"{not json",
        )
        assert malformed.status_code == 422

        direct = {
            "parent": f.parent().model_dump(),
            "product_id": product.id,
            "quantity": 1,
            "organization": f.organization().model_dump(),
            "ship_to": f.address().model_dump(),
        }
        await eventually(lambda: _status(http.post("/charges", headers=sales, json=direct), 202))
        empty_order = await http.post(  # the contract's ids are 1-200 characters
            "/charges", headers=sales, json={**direct, "sales_order_id": ""}
        )
        assert empty_order.status_code == 422, empty_order.text
        assert empty_order.headers["content-type"].startswith("application/problem+json")
        assert "sales_order_id" in empty_order.text

        missing = await http.get("/sales-orders/nope", headers=reader)
        assert missing.status_code == 404
        assert missing.json()["type"].endswith("not-found")

        fulfilled = await http.post(f"{so_url}/fulfill", headers=admin)  # admin has every role
        assert fulfilled.status_code == 200
        assert fulfilled.json()["status"] == "Fulfilled"


async def _status(call, code: int) -> bool:
    return (await call).status_code == code
