"""`python -m bench run [--n 2000] [--db sqlite,postgresql] [--services quotes,...]
[--smoke] [--profile SERVICE] [--out DIR]`: the raw-Kafka baseline, the minimal loop and
each service's hot path, in one run on one broker, then JSON, Markdown and plots.

`python -m bench e2e ...` (bench/e2e.py), `python -m bench sweep ...` (bench/sweep.py:
e2e at several rates) and `python -m bench memory ...` (bench/memory.py) run the whole
stack instead."""

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import baseline, e2e, e2e_report, env, memory, minimal, report, services, sweep
from bench.events import need_orders

RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the benchmark")
    run.add_argument("--n", type=int, default=None, help="events per scenario (2000)")
    run.add_argument("--db", default=None, help="sqlite,postgresql")
    run.add_argument(
        "--services",
        default=None,
        help=f"{','.join(services.MAIN)} (default); any of {','.join(services.SCENARIOS)}",
    )
    run.add_argument("--smoke", action="store_true", help="tiny: n=20, sqlite, purchasing")
    run.add_argument("--profile", default=None, help="profile this service's hot path")
    run.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    whole = sub.add_parser("e2e", help="the whole stack, end to end (bench/e2e.py)")
    whole.add_argument("--n", type=int, default=None, help="charges (2000)")
    whole.add_argument("--rate", type=float, default=None, help="charges offered per s (100)")
    whole.add_argument("--warmup", type=int, default=None, help="charges before the clock (20)")
    whole.add_argument("--smoke", action="store_true", help="tiny: n=10, rate 10, sqlite")
    curve = sub.add_parser("sweep", help="e2e at several offered rates (bench/sweep.py)")
    curve.add_argument("--rates", default=None, help="charges/s (25,50,75,100,125)")
    curve.add_argument("--seconds", type=float, default=None, help="of offers per rate (20)")
    curve.add_argument("--warmup", type=int, default=None, help="charges before the clock (20)")
    curve.add_argument("--smoke", action="store_true", help="tiny: rates 5,10 for 1 s, sqlite")
    mem = sub.add_parser("memory", help="RSS per service under steady load (bench/memory.py)")
    mem.add_argument("--minutes", type=float, default=10.0)
    mem.add_argument("--rate", type=float, default=20.0, help="charges offered per s")
    mem.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    for p in (whole, curve, mem):
        p.add_argument("--db", choices=("postgresql", "sqlite"), default=None)
        p.add_argument("--cadence", type=float, default=1.0, help="the people act every N s")
        p.add_argument("--out", type=Path, default=RESULTS, help="results directory")
    args = parser.parse_args(argv)
    if args.command == "e2e":
        args.n = args.n or (10 if args.smoke else 2000)
        args.rate = args.rate or (10.0 if args.smoke else 100.0)
        args.warmup = args.warmup if args.warmup is not None else (2 if args.smoke else 20)
        args.db = args.db or ("sqlite" if args.smoke else "postgresql")
    if args.command == "sweep":
        try:
            args.rates = sweep.rates_of(
                args.rates or ("5,10" if args.smoke else "25,50,75,100,125")
            )
        except ValueError as exc:
            parser.error(str(exc))
        args.seconds = args.seconds or (1.0 if args.smoke else 20.0)
        args.warmup = args.warmup if args.warmup is not None else (2 if args.smoke else 20)
        args.db = args.db or ("sqlite" if args.smoke else "postgresql")
    if args.command == "memory":
        args.db = args.db or "postgresql"
    if args.command != "run":
        return args
    smoke = args.smoke
    args.n = args.n or (20 if smoke else 2000)
    args.db = (args.db or ("sqlite" if smoke else "sqlite,postgresql")).split(",")
    args.services = args.services or ("purchasing" if smoke else ",".join(services.MAIN))
    args.services = args.services.split(",")
    for name in args.services:
        if name not in services.SCENARIOS:
            parser.error(f"unknown service {name!r}; known: {', '.join(services.SCENARIOS)}")
    return args


def say(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


async def measure(args: argparse.Namespace, bootstrap: str, workdir: Path) -> dict[str, Any]:
    dbs = env.Databases(workdir)
    sample = need_orders(args.n)  # real CloudEvents (~1.5 KB): the baseline's payloads too
    results: dict[str, Any] = {"minimal": [], "services": []}
    try:
        say(f"baseline: raw aiokafka, {args.n} messages")
        results["baseline"] = await baseline.run(
            bootstrap, [m.value for m in sample], env.PARTITIONS, 1.0 if args.smoke else 3.0
        )
        for backend in args.db:
            for batched in (False, True):
                say(f"minimal loop on {backend}{' (batched)' if batched else ''}")
                url = dbs.url(backend, "minimal")
                msgs = need_orders(args.n)
                r = await minimal.run(bootstrap, url, backend, msgs, batched=batched)
                results["minimal"].append(r)
            for name in args.services:
                say(f"service {name} on {backend}")
                profile_to = None
                if args.profile == name and backend == args.db[-1]:
                    profile_to = args.out / f"{args.stamp}-profile-{name}-{backend}"
                    results["profile"] = str(profile_to.with_suffix(".txt").name)
                r = await services.run(
                    name, backend, args.n, bootstrap, dbs, workdir, profile_to=profile_to
                )
                say(f"  {r['events']} events in {r['seconds']}s: {r['events_per_s']}/s")
                results["services"].append(r)
    finally:
        dbs.drop_all()
    results["meta_message_bytes"] = round(sum(len(m.value) for m in sample) / len(sample))
    return results


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        return out.stdout.strip()
    except OSError:
        return "?"


def harness_cpu_s() -> float:
    """CPU seconds this process (the harness) has used so far."""
    return sum(resource.getrusage(resource.RUSAGE_SELF)[:2])


def on_stack(args: argparse.Namespace) -> dict[str, Any]:
    """`e2e` or `memory`: one fresh stack, one measurement, and the run's facts."""
    scenario = e2e if args.command == "e2e" else memory
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    load_before = os.getloadavg()[0]
    say(f"{args.command}: starting the stack on {args.db}")
    with e2e.stack_on(args.db) as stack:
        say(f"{args.command}: stack ready (prefix {stack.prefix}); running")
        results = env.run(scenario.measure(stack, args))
        bootstrap = stack.bootstrap
    results["meta"] = {
        "stamp": stamp,
        "database": args.db,
        "broker": bootstrap,
        "cadence": args.cadence,
        "every": getattr(args, "every", 1.0),
        "cpus": os.cpu_count(),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "commit": git_commit(),
        "python": sys.version.split()[0],
        "event_loop": env.event_loop(),
        "harness_cpu_s": round(harness_cpu_s(), 1),
    }
    return results


def whole_stack(args: argparse.Namespace) -> int:
    """`e2e` or `memory`: one stack, one measurement, then JSON, Markdown and plots."""
    results = on_stack(args)
    paths = e2e_report.write(results, args.out, results["meta"]["stamp"])
    for name, s in results["stages"].items():
        if s.get("count"):
            say(
                f"{name:<24} n={s['count']:<5} p50 {s['p50_ms']:>8.0f} ms  p99 {s['p99_ms']:>8.0f} ms"
            )
    say(f"{'ok' if results['ok'] else 'NOT ok'}; wrote {paths['json']} and {paths['markdown']}")
    return 0 if results["ok"] else 1


def load_sweep(args: argparse.Namespace) -> int:
    """`sweep`: `e2e` at each rate on a fresh stack, then one JSON, Markdown and plot."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    points = []
    for rate in args.rates:
        run = argparse.Namespace(
            **{**vars(args), "command": "e2e", "rate": rate, "n": round(rate * args.seconds)}
        )
        say(f"sweep: {rate:g} charges/s, {run.n} charges")
        cpu_before = harness_cpu_s()
        results = on_stack(run)
        points.append(sweep.point(results, harness_cpu_s() - cpu_before))
        p99 = results["stages"]["won→queue"].get("p99_ms")
        say(f"sweep: {rate:g}/s {'ok' if results['ok'] else 'NOT ok'}; won→queue p99 {p99} ms")
    meta = {
        "stamp": stamp,
        "database": args.db,
        "broker": results["meta"]["broker"],
        "cpus": os.cpu_count(),
        "seconds": args.seconds,
        "warmup": args.warmup,
        "cadence": args.cadence,
        "commit": git_commit(),
        "python": sys.version.split()[0],
        "event_loop": env.event_loop(),
    }
    paths = sweep.write({"scenario": "sweep", "meta": meta, "points": points}, args.out, stamp)
    say(f"wrote {paths['json']} and {paths['markdown']}")
    return 0 if all(p["ok"] for p in points) else 1


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.getLogger("aiokafka").setLevel(logging.ERROR)  # retried leader moves are noise
    if args.command == "sweep":
        return load_sweep(args)
    if args.command != "run":
        return whole_stack(args)
    args.stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()[0]
    with env.broker() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        results = env.run(measure(args, bootstrap, Path(tmp)))
    results["meta"] = {
        "stamp": args.stamp,
        "n": args.n,
        "databases": args.db,
        "services": args.services,
        "broker": bootstrap,
        "cpus": os.cpu_count(),
        "load_before": round(load_before, 2),
        "load_after": round(os.getloadavg()[0], 2),
        "message_bytes": results.pop("meta_message_bytes"),
        "commit": git_commit(),
        "python": sys.version.split()[0],
        "event_loop": env.event_loop(),
    }
    paths = report.write(results, args.out, args.stamp)
    for row in results["rows"]:
        say(
            f"{row['scenario']:<32} {row['database']:<10} {row['events_per_s']:>9.0f}/s "
            f"echo {report._fmt(row['vs_echo'])} minimal {report._fmt(row['vs_minimal'])}"
        )
    say(f"wrote {paths['json']} and {paths['markdown']}")
    return 0 if all(r["ok"] for r in results["rows"]) else 1


if __name__ == "__main__":
    sys.exit(main())
