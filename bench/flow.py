"""The outside system and the people of the whole-stack runs, and when each charge passed
each point of the flow.

An outside system offers `opportunity.won` events (one charge each, a product subject to
procurement, extended cost under the approval threshold) on a fixed schedule, whether or
not the stack keeps up (open loop). The people work over HTTP, in bulk, every `cadence`
seconds: the buyer orders everything on the queue on POs of one vendor and submits them,
the receiver receives each PO in full as soon as receiving knows it, the shipper delivers
everything on the Ready tab. A consumer in the harness reads the flow's topics.

`marks[charge_id][point]` is a Unix time in seconds: Kafka record timestamps (the
producer's create time: the harness's for `won`, the service's outbox relay's for the
rest), the harness clock when an HTTP action returned (`ordered`, `receipt`,
`delivery`), and when shipping and quotes applied `units.received` (`ready`,
`ready_quotes`: their inbox rows, as nothing is published when units become Ready).
"""

import asyncio
import contextlib
import json
import time
from collections import defaultdict
from collections.abc import Coroutine
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine

from bench.events import message
from procure_contracts import events as ev
from procure_contracts.shapes import Product
from procure_devstack import factories as f
from procure_devstack.demo import ApiError, at
from procure_devstack.stackclient import StackClient
from procure_runtime.db import new_metadata

THRESHOLD = "1000.00"  # a charge costs at most 3 x 10.00: never waits for approval
PRODUCTS = 4
PEOPLE = ("Olive Sales", "Sam Owner", "Rita Resource", "Tom Tech", "Carl Charger")
WATCHED = (
    "charge.need_order",
    "charge.forwarded",
    "units.received",
    "salesorder.ready_to_fulfill",
)


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Flow:
    def __init__(self, client: StackClient, *, cadence: float = 1.0, batch: int = 500) -> None:
        self.client = client
        self.stack = client.stack
        self.cadence = cadence  # how often the people look at their pages
        self.batch = batch  # at most this many queue items per PO, Ready items per delivery
        self.marks: dict[str, dict[str, float]] = defaultdict(dict)
        self.offered: list[str] = []
        self.stop = asyncio.Event()
        self.errors: list[str] = []
        self.slip_s = 0.0  # how far the offers fell behind their schedule
        self._charge_of_so: dict[str, str] = {}
        self._receipts: dict[str, list[str]] = {}  # units.received event id -> charge ids
        self._to_receive: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    # --- setup -------------------------------------------------------------------------

    async def seed(self) -> None:
        """Settings (threshold, team), a vendor, a location and products, over HTTP."""
        c = self.client
        await c.settings(THRESHOLD)
        self.vendor, self.location = await c.catalog()
        self.products = [
            Product.model_validate(
                await c.product(
                    self.vendor["id"], inventory=i % 2 == 0, procurement=True, cost="10.00"
                )
            )
            for i in range(PRODUCTS)
        ]
        self.people = [c.cast.person(name) for name in PEOPLE]
        self.organization = f.organization(id=f"org-{c.cast.run}")
        self.ship_to = f.address()  # one destination: a delivery may hold any Ready items

    def won(self, i: int) -> ev.OpportunityWonV1:
        rep, tech = self.people[i % len(self.people)], self.people[(i + 2) % len(self.people)]
        charge = f.charge(
            self.products[i % len(self.products)],
            1 + i % 3,
            owner=rep,
            parent=f.parent("ticket", primary_resource=tech),
        )
        return f.opportunity_won(
            charge, owner=rep, organization=self.organization, ship_to=self.ship_to
        )

    # --- the outside system --------------------------------------------------------------

    async def offer(
        self, rate: float, *, count: int | None = None, seconds: float | None = None
    ) -> list[str]:
        """`rate` opportunities per second on a schedule, for `count` or `seconds`."""
        producer = AIOKafkaProducer(
            bootstrap_servers=self.stack.bootstrap, acks="all", enable_idempotence=True
        )
        await producer.start()
        ids: list[str] = []
        begin = time.monotonic()
        try:
            while not self.stop.is_set() and (count is None or len(ids) < count):
                due = begin + len(ids) / rate
                if seconds is not None and due - begin >= seconds:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                self.slip_s = max(self.slip_s, time.monotonic() - due)
                won = self.won(len(self.offered))
                charge_id = won.charges[0].id
                self._charge_of_so[won.sales_order.id] = charge_id
                self.offered.append(charge_id)
                ids.append(charge_id)
                msg = message("opportunity.won", won)
                sent = await producer.send(self._topic(msg.topic), msg.value, key=msg.key)
                sent.add_done_callback(lambda fut, c=charge_id: self._sent(c, fut))
            await producer.flush()
        finally:
            await producer.stop()
        return ids

    def _sent(self, charge_id: str, fut: asyncio.Future[Any]) -> None:
        if fut.exception() is not None:
            self.errors.append(f"offer {charge_id}: {fut.exception()!r}")
        else:
            self.marks[charge_id]["won"] = fut.result().timestamp / 1000

    def _topic(self, name: str) -> str:
        return f"{self.stack.prefix}{name}"

    # --- the people ------------------------------------------------------------------------

    async def buyer(self) -> None:
        """Everything on the queue onto POs (one vendor, to the location), submitted."""
        buyer = self.client.cast.buyer
        while not self.stop.is_set():
            items = await self._all("purchasing", "/fulfillment", vendor_id=self.vendor["id"])
            for chunk in chunks(items, self.batch):
                body = {
                    "vendor_id": self.vendor["id"],
                    "ship_to": {"kind": "location", "location_id": self.location["id"]},
                    "items": [{"item_id": i["item_id"]} for i in chunk],
                }
                po = await self.client.post(buyer, "purchasing", "/purchase-orders", body)
                po = await self.client.post(
                    buyer, "purchasing", at("/purchase-orders/{}/submit", po["id"])
                )
                self._mark([ln["charge_id"] for ln in po["lines"]], "ordered")
                self._to_receive.put_nowait(po)
            await self._pause()

    async def receiver(self) -> None:
        """Each submitted PO received in full, once receiving knows it (404 until then)."""
        while not self.stop.is_set():
            try:
                async with asyncio.timeout(self.cadence):
                    po = await self._to_receive.get()
            except TimeoutError:
                continue
            lines = [
                {
                    "line_id": ln["line_id"],
                    "quantity": ln["quantity"],
                    "location_id": self.location["id"],
                }
                for ln in po["lines"]
            ]
            path = at("/purchase-orders/{}/receipts", po["id"])
            while not self.stop.is_set():
                try:
                    await self.client.post(
                        self.client.cast.receiver, "receiving", path, {"lines": lines}
                    )
                except ApiError as exc:
                    if exc.status != 404:
                        raise
                    await asyncio.sleep(0.1)
                    continue
                self._mark([ln["charge_id"] for ln in po["lines"]], "receipt")
                break

    async def shipper(self) -> None:
        """Everything on the Ready tab delivered (one destination: bulk deliveries)."""
        shipper = self.client.cast.shipper
        while not self.stop.is_set():
            items = await self._all("shipping", "/delivery/ready")
            for chunk in chunks(items, self.batch):
                body = {"items": [{"item_id": i["item_id"]} for i in chunk]}
                await self.client.post(shipper, "shipping", "/deliveries", body)
                self._mark([i["charge_id"] for i in chunk], "delivery")
            await self._pause()

    async def _all(self, service: str, path: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        cursor = None
        while True:
            extra: dict[str, str] = {"cursor": cursor} if cursor else {}
            page = await self.client.get(service, path, None, limit=1000, **params, **extra)
            items += page["items"]
            if not (cursor := page["next_cursor"]):
                return items

    async def _pause(self) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.cadence):
                await self.stop.wait()

    def _mark(self, charge_ids: list[str], point: str) -> None:
        now = time.time()
        for charge_id in charge_ids:
            self.marks[charge_id][point] = now

    def run(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """A task whose failure stops the flow and is reported, not lost."""

        async def guarded() -> None:
            try:
                await work
            except Exception as exc:
                self.errors.append(f"{getattr(work, '__qualname__', work)}: {exc!r}")
                self.stop.set()

        return asyncio.create_task(guarded())

    def start(self, sampling: Coroutine[Any, Any, None]) -> list[asyncio.Task[None]]:
        """The samplers, the topic watcher and the people, as guarded tasks."""
        people = (self.watch, self.buyer, self.receiver, self.shipper)
        return [self.run(sampling), *(self.run(w()) for w in people)]

    # --- what landed -----------------------------------------------------------------------

    async def watch(self) -> None:
        """Marks from the record timestamps of the flow's topics, read from the start."""
        consumer = AIOKafkaConsumer(bootstrap_servers=self.stack.bootstrap)
        await consumer.start()
        try:
            await consumer._client.force_metadata_update()
            names = [self._topic(t) for t in WATCHED]
            if missing := [t for t in names if not consumer.partitions_for_topic(t)]:
                raise RuntimeError(f"topics not created by the services: {missing}")
            consumer.assign(
                [TopicPartition(t, p) for t in names for p in consumer.partitions_for_topic(t)]
            )
            await consumer.seek_to_beginning()
            while not self.stop.is_set():
                batch = await consumer.getmany(timeout_ms=200, max_records=2000)
                for records in batch.values():
                    for r in records:
                        self._landed(r.topic.removeprefix(self.stack.prefix), r)
        finally:
            await consumer.stop()

    def _landed(self, topic: str, record: Any) -> None:
        event = json.loads(record.value)
        data, at = event["data"], record.timestamp / 1000
        if topic == "charge.need_order":
            self.marks[data["charge_id"]].setdefault("need_order", at)
        elif topic == "charge.forwarded":
            self.marks[data["charge_id"]].setdefault("queue", at)
        elif topic == "units.received":
            self._receipts[event["id"]] = [ln["charge_id"] for ln in data["lines"]]
        elif charge_id := self._charge_of_so.get(data["sales_order_id"]):
            self.marks[charge_id].setdefault("delivered", at)  # salesorder.ready_to_fulfill

    def count(self, point: str, ids: list[str] | None = None) -> int:
        return sum(point in self.marks[c] for c in (self.offered if ids is None else ids))

    async def ready_marks(self) -> None:
        """`ready` / `ready_quotes`: when shipping / quotes applied each `units.received`
        (their inbox rows), read once the run is over."""
        inbox = new_metadata().tables["inbox"]
        for service, point in (("shipping", "ready"), ("quotes", "ready_quotes")):
            url = self.stack.envs[service][f"{service.upper()}_DATABASE_URL"]
            engine = create_async_engine(url)
            try:
                async with engine.connect() as conn:
                    rows = await conn.execute(
                        select(inbox.c.event_id, inbox.c.processed_at).where(
                            inbox.c.topic.in_(["units.received", self._topic("units.received")])
                        )
                    )
                    for event_id, at in rows:
                        for charge_id in self._receipts.get(event_id, ()):
                            self.marks[charge_id][point] = at.timestamp()
            finally:
                await engine.dispose()

    async def dead_letters(self) -> dict[str, int]:
        """Records on each service's dead-letter topic (a healthy run has none)."""
        probe = self.client.kafka
        found = await probe.end_offsets([f"dlq.{name}" for name in self.stack.procs])
        return {topic.removeprefix("dlq."): n for topic, n in found.items()}

    async def handler_time(self) -> dict[str, dict[str, list[float]]]:
        """Per service and event type: [events applied, seconds in their transactions],
        from each service's /metrics (`procure_handler_seconds`)."""
        out: dict[str, dict[str, list[float]]] = {}
        for name, url in self.stack.urls.items():
            text = (await self.client.api.http.get(f"{url}/metrics")).text
            per = out.setdefault(name, {})
            for family in text_string_to_metric_families(text):
                if family.name != "procure_handler_seconds":
                    continue
                for sample in family.samples:
                    kind = sample.name.rsplit("_", 1)[-1]
                    if kind in ("count", "sum"):
                        short = sample.labels["type"].removeprefix("procurement.")
                        per.setdefault(short, [0, 0.0])[1 if kind == "sum" else 0] = round(
                            sample.value, 3
                        )
        return out

    async def mail_delay(self) -> dict[str, Any]:
        """The notifier's `procure_mail_delay_seconds` (queued → accepted by the SMTP
        server): mails, mean, and the bucket bounds holding the median and the 99th."""
        text = (await self.client.api.http.get(f"{self.stack.urls['notifier']}/metrics")).text
        buckets: list[tuple[float, float]] = []
        count = total = 0.0
        for family in text_string_to_metric_families(text):
            if family.name != "procure_mail_delay_seconds":
                continue
            for sample in family.samples:
                if sample.name.endswith("_bucket"):
                    buckets.append((float(sample.labels["le"]), sample.value))
                elif sample.name.endswith("_count"):
                    count = sample.value
                elif sample.name.endswith("_sum"):
                    total = sample.value

        def bound(q: float) -> float | None:
            return next((le for le, n in sorted(buckets) if count and n >= q * count), None)

        return {
            "mails": int(count),
            "mean_ms": round(1000 * total / count, 1) if count else None,
            "p50_le_ms": _ms(bound(0.5)),
            "p99_le_ms": _ms(bound(0.99)),
        }

    async def delivered_in_quotes(self, ids: list[str]) -> int:
        """How many of these charges quotes shows with every unit Delivered/Shipped."""
        wanted, done = set(ids), 0
        for so in await self._all("quotes", "/sales-orders"):
            for ch in so["charges"]:
                units = ch["units"]
                done += ch["id"] in wanted and units["Delivered/Shipped"] == ch["quantity"]
        return done


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(1000 * seconds, 1)
