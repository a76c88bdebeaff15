"""What a service's hot path costs in its own process: the CPU per event of `bench run`'s
scenarios, applied in-process with no broker (the records go straight to
`Consumer.process_batch` in batches, as a fetch of a backlog hands them over).

    uv run python -m bench.apply [--db postgresql] [--services receiving,quotes] [--n 10000]

`bench run` measures throughput against the raw echo, with the broker, the harness and
the database sharing two cores, so its figures move by 20% or more from one run to the
next. This measures what the service's process spends (`time.process_time`): the
figure to compare when a change makes each event cheaper, the same command on two
commits run one after the other. Beside it, what the whole machine spent (the database
server's share included, from /proc/stat). Outgoing events are written to the outbox
(that cost is counted) but not published; the relay's cost is `bench run`'s."""

import argparse
import importlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

from bench import env
from bench.bulk import record
from bench.events import Msg
from bench.sampling import machine_busy_s
from bench.services import SCENARIOS, settled_heap
from procure_runtime.consumer import Record


def records(msgs: list[Msg], first_offset: int) -> list[Record]:
    return [record(m, first_offset + i) for i, m in enumerate(msgs)]


async def measure(service: str, backend: str, n: int, batch: int, workdir: Path) -> dict[str, Any]:
    dbs = env.Databases(workdir)
    try:
        scenario = SCENARIOS[service]
        url = dbs.url(backend, "apply")
        settings = env.settings(scenario.service, url, "127.0.0.1:9", workdir)
        _, runtime = importlib.import_module(f"procure_{scenario.service}.app").build(settings)
        await runtime._migrate()
        consumer = runtime.consumer
        setup, measured = scenario.make(n + batch)
        before = records(setup, 0)
        for i in range(0, len(before), batch):  # not timed
            await consumer.process_batch(before[i : i + batch])
        timed = records(measured, len(before))
        await consumer.process_batch(timed[:batch])  # warms the statement caches; not timed
        async with settled_heap():  # the collector as a service process has it
            used, started, busy = time.process_time(), time.perf_counter(), machine_busy_s()
            for i in range(batch, len(timed), batch):
                await consumer.process_batch(timed[i : i + batch])
            cpu, wall = time.process_time() - used, time.perf_counter() - started
            machine = machine_busy_s() - busy
        inbox = runtime.metadata.tables["inbox"]
        async with runtime.db.session() as session:
            applied = await session.scalar(
                select(func.count()).where(inbox.c.topic == scenario.topic)
            )
        parked = await consumer.parked_count()
        await runtime.db.engine.dispose()
    finally:
        dbs.drop_all()
    if applied != n + batch or parked:  # what was timed must be every event applied
        raise RuntimeError(f"{service}: {applied} of {n + batch} applied, {parked} parked")
    return {
        "events": n,
        "cpu_us_per_event": round(1e6 * cpu / n, 1),
        "wall_us_per_event": round(1e6 * wall / n, 1),
        "machine_cpu_us_per_event": round(1e6 * machine / n, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.apply")
    parser.add_argument("--db", default="postgresql", choices=["sqlite", "postgresql"])
    parser.add_argument("--services", default=",".join(SCENARIOS))
    parser.add_argument("--n", type=int, default=10_000, help="timed events per service")
    parser.add_argument("--batch", type=int, default=100, help="records per process_batch")
    parser.add_argument("--out", type=Path, default=None, help="also write the JSON here")
    args = parser.parse_args(argv)
    names = args.services.split(",")
    for name in names:
        if name not in SCENARIOS:
            parser.error(f"unknown service {name!r}; known: {', '.join(SCENARIOS)}")
    figures = {}
    print(f"{args.db}, {args.n} events in batches of {args.batch}, no broker:")
    print(
        f"{'service':<14} {'CPU µs/event':>13} {'wall µs/event':>14} {'machine CPU µs/event':>21}"
    )
    for name in names:
        with tempfile.TemporaryDirectory(prefix="bench-apply-") as tmp:
            row = env.run(measure(name, args.db, args.n, args.batch, Path(tmp)))
        figures[name] = row
        print(
            f"{name:<14} {row['cpu_us_per_event']:>13.1f} {row['wall_us_per_event']:>14.1f} "
            f"{row['machine_cpu_us_per_event']:>21.1f}"
        )
    if args.out:
        meta = {"database": args.db, "n": args.n, "batch": args.batch}
        env.save_figures(args.out, "apply", meta, {"services": figures})
    return 0


if __name__ == "__main__":
    sys.exit(main())
