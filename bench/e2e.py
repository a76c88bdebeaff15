"""`python -m bench e2e [--n 2000] [--rate 100] [--db postgresql|sqlite] [--smoke]`: the
whole stack (six processes, as `procure up` runs them) carrying N charges from
`opportunity.won` to Delivered/Shipped, with the harness as the outside system and the
people (bench/flow.py).

Measured per charge, for the stages the issue names (p50/p95/p99/max):
- won→need_order, won→queue: `opportunity.won` produced → `charge.need_order` /
  `charge.forwarded` published (record timestamps). Routing: quotes, then purchasing.
- receipt→ready: the receipt POST returned → shipping applied `units.received` (the
  units are on the Ready tab); "(quotes)": quotes applied it (the charge's units are
  `Ready to Deliver/Ship` in its ledger).
- delivery→delivered: the delivery POST returned → quotes published
  `salesorder.ready_to_fulfill` (one charge per sales order: all its units delivered).
- won→delivered: the whole flow, the people's cadence included.
Also: throughput (offered, through routing, whole flow), each group's consumer lag and
each service's RSS and CPU every second, and how long the notifier's mails waited from
queued to accepted (its `procure_mail_delay_seconds`). The goal (issue 10): the routing stages
(won→queue, receipt→ready) keep p99 < 250 ms at 100 charges/s offered.
"""

import argparse
import asyncio
import contextlib
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench import env
from bench.flow import Flow
from bench.sampling import Samplers
from procure_devstack.stack import Stack, launch_stack
from procure_devstack.stackclient import StackClient
from procure_devstack.testing import KafkaProbe

STACK_ENV = {"PROCURE_LOG_LEVEL": "WARNING"}  # an INFO line per event would be measured too
STAGES = (
    ("won→need_order", "won", "need_order"),
    ("won→queue", "won", "queue"),
    ("receipt→ready", "receipt", "ready"),
    ("receipt→ready (quotes)", "receipt", "ready_quotes"),
    ("delivery→delivered", "delivery", "delivered"),
    ("won→delivered", "won", "delivered"),
)
POINTS: tuple[str, ...] = (
    "won",
    "need_order",
    "queue",
    "ordered",
    "receipt",
    "ready",
    "ready_quotes",
)
POINTS += ("delivery", "delivered")
GOAL_STAGES = ("won→queue", "receipt→ready", "receipt→ready (quotes)")
GOAL_P99_MS = 250.0
GOAL_RATE = 100.0


@contextlib.contextmanager
def stack_on(backend: str) -> Iterator[Stack]:
    """The six services on fresh databases (dropped afterwards), 3 partitions per topic."""
    with env.broker() as bootstrap, tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        dbs = env.Databases(Path(tmp))
        try:
            url: Callable[[str], str] = lambda name: dbs.url(backend, f"e2e_{name}")  # noqa: E731
            with launch_stack(
                Path(tmp),
                bootstrap,
                url,
                partitions=env.PARTITIONS,
                env=STACK_ENV,
                mail_files=False,
            ) as stack:
                yield stack
        finally:
            dbs.drop_all()


async def until(check: Callable[[], bool], flow: Flow, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not check():
        if flow.stop.is_set() or time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.25)
    return True


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    async with StackClient(stack, KafkaProbe(stack.bootstrap, stack.prefix), timeout=60) as client:
        flow = Flow(client, cadence=args.cadence)
        await flow.seed()
        started = time.time()
        samplers = Samplers(stack, started)
        sampled = asyncio.Event()
        tasks = flow.start(samplers.run(sampled, every_s=1.0, lag_every_s=1.0))
        warm = await flow.offer(args.rate, count=args.warmup)  # first connections, caches
        await until(lambda: flow.count("queue", warm) == len(warm), flow, 120)
        ids = await flow.offer(args.rate, count=args.n)
        timeout = 300 + args.n / 5
        done = await until(lambda: flow.count("delivered") == len(flow.offered), flow, timeout)
        seconds = time.time() - started
        flow.stop.set()
        sampled.set()
        await asyncio.gather(*tasks)
        await flow.ready_marks()
        verified = await flow.delivered_in_quotes(ids)
        dead = await flow.dead_letters()
        handlers = await flow.handler_time()
        mails = await flow.mail_delay()
    if not done:
        print(stack.logs(20))
    return {
        "scenario": "e2e",
        "ok": done and not flow.errors and verified == len(ids) and not any(dead.values()),
        "charges": len(ids),
        "warmup": len(warm),
        "verified_in_quotes": verified,
        "errors": flow.errors,
        "dead_letters": dead,
        "handlers": handlers,
        "mails": mails,
        "seconds": round(seconds, 1),
        "counts": {p: flow.count(p, ids) for p in POINTS},
        "offer": {"rate": args.rate, "max_slip_s": round(flow.slip_s, 3)},
        "throughput": throughput(flow.marks, ids),
        "stages": {name: stats(v) for name, v in latencies(flow.marks, ids).items()},
        "latencies_ms": latencies(flow.marks, ids),
        "series": {
            "per_second": per_second(flow.marks, flow.offered, started),
            "lag": samplers.lag,
            "processes": samplers.processes,
        },
    }


def latencies(marks: dict[str, dict[str, float]], ids: list[str]) -> dict[str, list[float]]:
    out = {}
    for name, start, end in STAGES:
        pairs = [(marks[c].get(start), marks[c].get(end)) for c in ids]
        out[name] = [round((b - a) * 1000, 1) for a, b in pairs if a and b]
    return out


def stats(ms: list[float]) -> dict[str, Any]:
    if not ms:
        return {"count": 0}
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return {
        "count": len(ms),
        "p50_ms": round(float(p50), 1),
        "p95_ms": round(float(p95), 1),
        "p99_ms": round(float(p99), 1),
        "max_ms": max(ms),
        "mean_ms": round(sum(ms) / len(ms), 1),
    }


def throughput(marks: dict[str, dict[str, float]], ids: list[str]) -> dict[str, Any]:
    """Charges per second: offered; through routing (first offer → last on the queue);
    through the whole flow (first offer → last delivered)."""

    def at(point: str) -> list[float]:
        return sorted(marks[c][point] for c in ids if point in marks[c])

    won, queued, delivered = at("won"), at("queue"), at("delivered")
    if len(won) < 2:
        return {}
    out = {"offered_per_s": round((len(won) - 1) / (won[-1] - won[0]), 1)}
    if queued:
        out["routed_per_s"] = round(len(queued) / (queued[-1] - won[0]), 1)
    if delivered:
        out["whole_flow_per_s"] = round(len(delivered) / (delivered[-1] - won[0]), 1)
    return out


def per_second(
    marks: dict[str, dict[str, float]], ids: list[str], started: float
) -> dict[str, list[int]]:
    """How many charges passed each point in each second of the run."""
    out = {}
    for point in ("won", "queue", "receipt", "ready", "delivered"):
        seconds = [int(marks[c][point] - started) for c in ids if point in marks[c]]
        out[point] = np.bincount(np.maximum(seconds, 0)).tolist() if seconds else []
    return out


def goals(results: dict[str, Any]) -> dict[str, str]:
    """Each routing stage against p99 < 250 ms, judged only at the goal's offered load."""
    out = {}
    for name in GOAL_STAGES:
        p99 = results["stages"].get(name, {}).get("p99_ms")
        if p99 is None:
            out[name] = "not measured (no charge reached it)"
        elif results["offer"]["rate"] < GOAL_RATE:
            out[name] = f"not judged (offered {results['offer']['rate']:g}/s, not {GOAL_RATE:g}/s)"
        else:
            out[name] = "met" if p99 < GOAL_P99_MS else "NOT met"
    return out
