"""`python -m bench.heap [--service quotes] [--db postgresql] [--n 3000] [--rounds 4]`:
is a service's memory growth a leak? One service in-process works through `rounds`
backlogs of `n` events of its hot path; after each, the Python heap is measured with
tracemalloc (after a GC) and the largest differences between the last rounds are
printed with their tracebacks. A heap that stops growing after warm-up, while the RSS
still creeps, points at the allocator (fragmentation, arenas), not at our objects.
Writes `results/<stamp>-heap-<service>.txt`."""

import argparse
import asyncio
import gc
import importlib
import logging
import sys
import tempfile
import tracemalloc
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import env, services
from bench.run import RESULTS
from procure_devstack.testing import running
from procure_runtime.kafka import ensure_topics


async def measure(service: str, backend: str, n: int, rounds: int, bootstrap: str) -> str:
    tracemalloc.start(12)
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-heap-") as tmp:
        dbs = env.Databases(Path(tmp))
        try:
            settings = env.settings(service, dbs.url(backend, service), bootstrap, Path(tmp))
            app, runtime = importlib.import_module(f"procure_{service}.app").build(settings)
            scenario = services.SCENARIOS[service]
            backlogs = []
            for _ in range(rounds):
                setup, measured = scenario.make(n)
                backlogs.append(setup + measured)
            topics = {settings.topic(m.topic): False for b in backlogs for m in b}
            await ensure_topics(settings, topics)
            watch = services.Watch(settings.database_url, runtime.metadata)
            snapshots = []
            async with running(app, runtime):
                total = 0
                for i, backlog in enumerate(backlogs, 1):
                    await services.publish(settings, backlog)
                    total += sum(1 for m in backlog if m.topic == scenario.topic)
                    await watch.wait(scenario.topic, total, 600, [])
                    await asyncio.sleep(2)  # let the relay finish
                    gc.collect()
                    snapshots.append(tracemalloc.take_snapshot())
                    current, peak = tracemalloc.get_traced_memory()
                    lines.append(
                        f"round {i}: {total} events applied; Python heap {current / 1e6:.1f} MB"
                        f" (peak {peak / 1e6:.1f} MB)"
                    )
            await watch.engine.dispose()
        finally:
            dbs.drop_all()
    lines.append(f"\nlargest differences between round {rounds - 1} and round {rounds}:")
    for stat in snapshots[-1].compare_to(snapshots[-2], "traceback")[:8]:
        lines.append(str(stat))
        lines += [f"    {line}" for line in stat.traceback.format()[-6:]]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.heap")
    parser.add_argument("--service", default="quotes", choices=sorted(services.SCENARIOS))
    parser.add_argument("--db", default="postgresql", choices=["sqlite", "postgresql"])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with env.broker() as bootstrap:
        text = env.run(measure(args.service, args.db, args.n, args.rounds, bootstrap))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{stamp}-heap-{args.service}.txt"
    path.write_text(text + "\n")
    print(text)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
