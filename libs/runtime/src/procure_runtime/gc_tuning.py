"""The garbage collector's settings for a service process.

A service allocates a lot per event (decoded envelopes, pydantic models, SQLAlchemy rows)
and keeps a large heap of long-lived objects from startup (modules, pydantic schemas,
table metadata, migrations). With CPython's defaults, the young generation is collected
every 700 allocations, in the middle of every batch, so short-lived objects get promoted
and full collections follow; each full collection walks the whole startup heap (about
0.1 s here) and stalls every event in flight. Measured in `bench` (bench/levers.md, lever 12).

So once the service has started:
- the startup heap is moved to the permanent generation (`gc.freeze`), which collections
  never walk again (objects in it are still freed by reference counting);
- the young generation is collected every `GEN0_THRESHOLD` allocations, so most of a
  batch's objects die by reference counting before any collection sees them.
"""

import gc

GEN0_THRESHOLD = 10_000


def settle_heap() -> None:
    """Call once per process, after startup (not in a process that starts many services,
    such as a test run: what is frozen is never collected as a cycle)."""
    gc.collect()
    gc.freeze()
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(max(gen0, GEN0_THRESHOLD), gen1, gen2)
