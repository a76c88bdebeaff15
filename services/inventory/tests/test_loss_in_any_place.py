"""An opportunity's loss comes on its own topic, so it may be applied before, between or
after the claims on its reservations (its won, direct charges listing them). Whatever
its place, inventory ends in the same state: the claims applied after it take back what
they would have picked had they come first (`domain.retaken`), once each, and nothing
more. Random scenarios, the same every run, each applied with the loss in every place;
the claims themselves keep their order (who claims first is theirs to race)."""

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from procure_contracts import CloudEvent
from procure_contracts import events as ev
from procure_devstack import factories as f
from procure_devstack.testing import fed_directly, record
from procure_inventory import stock
from procure_inventory.domain import ReservationStatus
from procure_inventory.models import holds, reservations
from procure_inventory.models import stock as stock_table
from procure_inventory.picking import lock_open_opportunity
from procure_runtime.service import ServiceRuntime

LOC = "loc-1"
SCENARIOS = 40
CLAIMS = 3  # a won and two direct charges, in a random order


@dataclass
class Scenario:
    n: int
    held: list[int]  # what each reservation r-n-k holds
    claims: list[tuple[str, Any]]  # (topic, data), applied in this order

    def __str__(self) -> str:
        """Its claims, each as charge id -> its listings (reservation id, units)."""
        charges = [[d.charge] if t == "charge.created" else d.charges for t, d in self.claims]
        return f"scenario {self.n}, holding {self.held}: " + " then ".join(
            str({c.id: [(r.id, r.quantity) for r in c.reservations] for c in each})
            for each in charges
        )

    @property
    def opportunity(self) -> str:
        return f"opp-{self.n}"

    @property
    def product(self) -> str:
        return f"p-{self.n}"


def _listing(rng: random.Random, n: int, held: list[int]) -> list[tuple[str, str, int]]:
    """Some of the scenario's reservations, each for 1 to what it holds (or one more)."""
    chosen = rng.sample(range(len(held)), rng.randint(0, len(held)))
    return [(f"r-{n}-{k}", LOC, rng.randint(1, held[k] + 1)) for k in chosen]


def _charge(rng: random.Random, n: int, held: list[int], name: str) -> Any:
    listed = _listing(rng, n, held)
    product = f.product(id=f"p-{n}", inventory=True, procurement=rng.random() < 0.8)
    units = sum(q for _, _, q in listed) + rng.randint(0, 1) or 1
    return f.charge(product, units, id=f"ch-{n}-{name}", reservations=listed)


def scenario(n: int) -> Scenario:
    rng = random.Random(n)
    held = [rng.randint(1, 3) for _ in range(rng.randint(1, 3))]
    won = f.opportunity_won(
        *(_charge(rng, n, held, f"w{j}") for j in range(rng.randint(1, 2))),
        opportunity_id=f"opp-{n}",
        sales_order_id=f"so-{n}",
    )
    claims: list[tuple[str, Any]] = [("opportunity.won", won)]
    claims += [("charge.created", f.charge_created(_charge(rng, n, held, f"d{j}"))) for j in (1, 2)]
    rng.shuffle(claims)
    return Scenario(n, held, claims)


async def _reserve(runtime: ServiceRuntime, s: Scenario) -> None:
    """Stock for the reservations and 2 units more, then the reservations themselves."""
    async with runtime.transaction() as uow:
        assert await stock.change(uow.session, s.product, LOC, on_hand=sum(s.held) + 2)
        await lock_open_opportunity(uow, s.opportunity)
        assert await stock.change(uow.session, s.product, LOC, reserved=sum(s.held))
        await uow.session.execute(
            reservations.insert(),
            [
                {
                    "id": f"r-{s.n}-{k}",
                    "opportunity_id": s.opportunity,
                    "quote_item_id": f"qi-{s.n}-{k}",
                    "product_id": s.product,
                    "location_id": LOC,
                    "quantity": units,
                    "status": ReservationStatus.ACTIVE,
                }
                for k, units in enumerate(s.held)
            ],
        )


async def _states(runtime: ServiceRuntime) -> dict[int, dict[str, Any]]:
    """Per scenario: its stock, holds, reservations and the picks and failures sent."""
    outbox = runtime.metadata.tables["outbox"]
    by: dict[int, dict[str, Any]] = {}

    def of(key: str) -> dict[str, Any]:
        n = int(key.split("-")[1])
        return by.setdefault(n, {"stock": [], "holds": [], "reservations": [], "sent": []})

    async with runtime.db.session() as session:
        for row in await session.execute(select(stock_table)):
            of(row.product_id)["stock"].append(tuple(row))
        for row in await session.execute(select(holds).order_by(holds.c.charge_id)):
            of(row.product_id)["holds"].append(tuple(row))
        query = select(
            reservations.c.id,
            reservations.c.status,
            reservations.c.picked,
            reservations.c.charge_id,
        ).order_by(reservations.c.id)
        for row in await session.execute(query):
            of(row.id)["reservations"].append(tuple(row))
        for topic, value in await session.execute(select(outbox.c.topic, outbox.c.value)):
            if topic in ("units.picked", "pick.failed"):
                data = CloudEvent.model_validate_json(value).data
                of(data["charge_id"])["sent"].append(
                    (topic, data["charge_id"], data["quantity"], data.get("reservation_id"))
                )
    for state in by.values():
        state["sent"].sort()
    return by


async def _applied(
    database_url: Callable[[str], str], tmp_path: Path, scenarios: list[Scenario], at: int
) -> dict[int, dict[str, Any]]:
    """Every scenario's claims with its loss applied before the claim `at`."""
    runtime = await fed_directly("inventory", database_url(f"loss_at_{at}"), tmp_path / str(at))
    try:
        offset = 0
        for s in scenarios:
            await _reserve(runtime, s)
            lost = ("opportunity.lost", ev.OpportunityLostV1(opportunity_id=s.opportunity))
            for topic, data in [*s.claims[:at], lost, *s.claims[at:]]:
                await runtime.consumer.process(record(topic, data, offset))
                offset += 1
        assert await runtime.consumer.parked_count() == 0
        return await _states(runtime)
    finally:
        await runtime.db.engine.dispose()


async def test_the_loss_in_any_place_among_the_claims_leaves_the_same_state(
    database_url: Callable[[str], str], tmp_path: Path
) -> None:
    scenarios = [scenario(n) for n in range(SCENARIOS)]
    last = await _applied(database_url, tmp_path, scenarios, CLAIMS)  # the loss comes last
    for at in range(CLAIMS):
        states = await _applied(database_url, tmp_path, scenarios, at)
        for s in scenarios:
            assert states[s.n] == last[s.n], f"the loss before claim {at} of {s}"
    # The scenarios reach the take-back: claims picked and failed listed units.
    sent = [m[0] for state in last.values() for m in state["sent"]]
    assert "units.picked" in sent and "pick.failed" in sent
