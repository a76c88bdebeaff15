"""`python -m bench memory [--minutes 10] [--rate 20] [--db postgresql|sqlite]`: the whole
stack under a steady offered load of the whole flow (bench/flow.py: charges offered
continuously, the people ordering, receiving and delivering every few seconds) for M
minutes, with each service's RSS sampled every few seconds.

The issue's goal: memory per service stays flat over a 10-minute run. The first half is
warm-up (pools, caches, the allocator's arenas); over the second half a line is fitted to
each service's RSS. A service is "flat" when the fitted growth over the second half is
under FLAT_MB: a leak of a few hundred bytes per event would show as several MB.
"""

import argparse
import asyncio
import time
from typing import Any

import numpy as np

from bench.e2e import latencies, stats
from bench.flow import Flow
from bench.sampling import Samplers
from procure_devstack.stack import Stack
from procure_devstack.stackclient import StackClient
from procure_devstack.testing import KafkaProbe

FLAT_MB = 5.0


async def measure(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    async with StackClient(stack, KafkaProbe(stack.bootstrap, stack.prefix), timeout=60) as client:
        flow = Flow(client, cadence=args.cadence)
        await flow.seed()
        started = time.time()
        samplers = Samplers(stack, started)
        sampled = asyncio.Event()
        tasks = flow.start(samplers.run(sampled, every_s=args.every, lag_every_s=args.every))
        ids = await flow.offer(args.rate, seconds=args.minutes * 60)
        seconds = time.time() - started
        sampled.set()
        flow.stop.set()
        await asyncio.gather(*tasks)
        dead = await flow.dead_letters()
        handlers = await flow.handler_time()
    return {
        "scenario": "memory",
        "ok": not flow.errors and not any(dead.values()),
        "minutes": args.minutes,
        "seconds": round(seconds, 1),
        "charges": len(ids),
        "delivered": flow.count("delivered", ids),
        "errors": flow.errors,
        "dead_letters": dead,
        "handlers": handlers,
        "offer": {"rate": args.rate, "max_slip_s": round(flow.slip_s, 3)},
        "stages": {name: stats(v) for name, v in latencies(flow.marks, ids).items()},
        "rss": rss_summary(samplers.processes),
        "series": {"lag": samplers.lag, "processes": samplers.processes},
    }


def rss_summary(samples: list[list[Any]]) -> dict[str, dict[str, Any]]:
    """Per service: RSS at the start, half-way, the end and its max (MB), the slope over
    the second half (MB/min) and the verdict."""
    out = {}
    names = sorted({name for _, row in samples for name in row})
    end_t = samples[-1][0] if samples else 0.0
    for name in names:
        series = [(t, row[name][0]) for t, row in samples if name in row]
        late = [(t, rss) for t, rss in series if t >= end_t / 2]
        slope = 0.0
        if len(late) >= 3:
            slope = float(np.polyfit([t / 60 for t, _ in late], [r for _, r in late], 1)[0])
        growth = slope * (late[-1][0] - late[0][0]) / 60 if late else 0.0
        out[name] = {
            "start_mb": series[0][1],
            "half_mb": late[0][1] if late else None,
            "end_mb": series[-1][1],
            "max_mb": max(r for _, r in series),
            "slope_mb_per_min": round(slope, 2),
            "second_half_growth_mb": round(growth, 1),
            "flat": growth < FLAT_MB,
        }
    return out
