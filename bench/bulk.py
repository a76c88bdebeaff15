"""What quotes' bulk events cost: a PO, a receipt and a delivery of `--lines` charges each,
applied by quotes' consumer in-process (no broker: the records go straight to
`Consumer.process_batch`, as a fetch would hand them over).

    uv run python -m bench.bulk [--db postgresql] [--groups 20] [--lines 100]

Quotes applies these while it routes new deals, so their cost is what holds routing up
when the people's bulk steps land (bench/levers.md, lever 21). Each bulk event is
timed alone, wall and CPU; the figures to compare are the same command's on two
commits, run one after the other on one machine."""

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench import env
from bench.events import LOCATION, Msg, message
from bench.services import settled_heap
from procure_contracts import events as ev
from procure_contracts.status import POStatus
from procure_devstack import factories as f
from procure_devstack.testing import unique
from procure_runtime.consumer import Record

RESULTS = Path(__file__).parent / "results"
KINDS = ("po.submitted", "units.received", "shipment.delivered")


@dataclass(frozen=True)
class Group:
    """`lines` charges, each on a sales order of its own, and the bulk events that move
    them from Need to Order to Delivered/Shipped."""

    won: list[Msg]
    bulk: list[Msg]  # one of each of KINDS, in that order


def group(lines: int, n: int) -> Group:
    won, po_lines, received, delivered = [], [], [], []
    po_id = unique("po-")
    for _ in range(lines):
        ch = f.charge(f.product(unit_cost="5.00"), quantity=2)
        data = f.opportunity_won(ch)
        won.append(message("opportunity.won", data))
        line_id = unique("pol-")
        po_lines.append(
            ev.POLine(
                line_id=line_id,
                charge_id=ch.id,
                product=ch.product,
                quantity=2,
                unit_cost=Decimal("5.00"),
            )
        )
        received.append(
            ev.ReceivedLine(
                line_id=line_id,
                charge_id=ch.id,
                product_id=ch.product.id,
                quantity=2,
                location_id=LOCATION,
                open_after=0,
            )
        )
        delivered.append(
            ev.DeliveredItem(
                item_id=unique("it-"),
                charge_id=ch.id,
                seq=1,
                sales_order_id=data.sales_order.id,
                product_id=ch.product.id,
                quantity=2,
            )
        )
    po = ev.PORef(
        id=po_id,
        number=f"PO-{n:06d}",
        vendor=f.vendor(),
        ship_to=ev.POShipTo(kind="location", location_id=LOCATION),
    )
    people = f.person("Bea Bench")
    bulk = [
        message("po.submitted", ev.POSubmittedV1(po=po, lines=po_lines, submitted_by=people)),
        message(
            "units.received",
            ev.UnitsReceivedV1(
                receipt_id=unique("rcpt-"),
                po_id=po_id,
                number=po.number,
                drop_ship=False,
                po_status=POStatus.RECEIVED_FULL,
                received_by=people,
                lines=received,
            ),
        ),
        message(
            "shipment.delivered",
            ev.ShipmentDeliveredV1(
                delivery_id=unique("dl-"),
                drop_ship=False,
                destination=f.address(),
                delivered_by=people,
                items=delivered,
            ),
        ),
    ]
    return Group(won, bulk)


def record(msg: Msg, offset: int) -> Record:
    return Record(topic=msg.topic, partition=0, offset=offset, key=msg.key, value=msg.value)


async def measure(
    backend: str, groups: int, lines: int, workdir: Path, *, growing: bool = False
) -> dict[str, Any]:
    from procure_quotes.app import build
    from procure_quotes.models import charges

    dbs = env.Databases(workdir)
    try:
        settings = env.settings("quotes", dbs.url(backend, "bulk"), "127.0.0.1:9", workdir)
        _, runtime = build(settings)
        await runtime._migrate()
        consumer = runtime.consumer
        made = [group(lines, n) for n in range(groups)]
        won = [[record(m, lines * n + i) for i, m in enumerate(g.won)] for n, g in enumerate(made)]
        if not growing:  # every deal first: the bulk events meet tables at their full size
            for deals in won:  # setup, not timed
                await consumer.process_batch(deals)
        wall: dict[str, list[float]] = {k: [] for k in KINDS}
        cpu: dict[str, list[float]] = {k: [] for k in KINDS}
        async with settled_heap():  # the collector as a service process has it
            for n, g in enumerate(made):
                if growing:  # a group's deals just before its bulk events, not timed
                    await consumer.process_batch(won[n])
                for msg in g.bulk:
                    started, used = time.perf_counter(), time.process_time()
                    await consumer.process_batch([record(msg, n)])
                    wall[msg.topic].append((time.perf_counter() - started) * 1000)
                    cpu[msg.topic].append((time.process_time() - used) * 1000)
        parked = await consumer.parked_count()
        async with runtime.db.session() as session:
            delivered = await session.scalar(
                select(func.count()).where(charges.c.delivered == charges.c.quantity)
            )
        await runtime.db.engine.dispose()
    finally:
        dbs.drop_all()
    if parked or delivered != groups * lines:  # what was timed must be the whole flow
        raise RuntimeError(f"{parked} bulk events parked, {delivered} charges delivered")
    return {
        kind: {
            "events": len(wall[kind]),
            "wall_ms_median": round(statistics.median(wall[kind]), 2),
            "cpu_ms_median": round(statistics.median(cpu[kind]), 2),
            "cpu_us_per_line": round(1000 * statistics.median(cpu[kind]) / lines, 1),
        }
        for kind in KINDS
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bulk")
    parser.add_argument("--db", default="postgresql", choices=["sqlite", "postgresql"])
    parser.add_argument("--groups", type=int, default=20, help="bulk events of each kind")
    parser.add_argument("--lines", type=int, default=100, help="charges per bulk event")
    parser.add_argument(
        "--growing",
        action="store_true",
        help="each group's deals just before its bulk events, as the flow has them: the "
        "tables grow from empty while the statements prepared early are kept",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-bulk-") as tmp:
        figures = env.run(
            measure(args.db, args.groups, args.lines, Path(tmp), growing=args.growing)
        )
    order = "deals and bulk events in turn" if args.growing else "every deal first"
    print(f"quotes, {args.db}, {args.groups} of each bulk event, {args.lines} lines each, {order}:")
    print(f"{'event':<20} {'wall ms':>8} {'CPU ms':>8} {'CPU µs/line':>12}  (medians)")
    for kind, row in figures.items():
        print(
            f"{kind:<20} {row['wall_ms_median']:>8.1f} {row['cpu_ms_median']:>8.1f} "
            f"{row['cpu_us_per_line']:>12.0f}"
        )
    if args.out:
        meta = {
            "database": args.db,
            "groups": args.groups,
            "lines": args.lines,
            "growing": args.growing,
        }
        env.save_figures(args.out, "bulk", meta, {"quotes": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
