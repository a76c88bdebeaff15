"""Where a profiled hot path spends its wall time: `python -m bench.profile FILE.pyisession`
sorts pyinstrument's samples into the runtime's tasks and a few costs worth naming."""

import collections
import sys

from pyinstrument.session import Session

# The first marker found in a sample's stack names its bucket (most specific first).
TASKS = [
    ("on_record", "consumer: FastStream handler -> Consumer.process (one record)"),
    ("publish_pending", "outbox relay"),
    ("_parking_loop", "parking lot sweep"),
    ("Watch", "bench watcher (polls the inbox)"),
    ("epoll.poll", "idle: waiting for the database or the broker"),
    ("sslproto", "asyncio TLS transport (PostgreSQL over TLS)"),
    ("aiokafka", "aiokafka internals (fetch, produce, coordinator)"),
    ("faststream", "FastStream internals"),
    ("sqlalchemy", "SQLAlchemy sync half (greenlet: compile, execute, results)"),
]
COSTS = [
    ("_async_ping", "connection pool pre-ping (a round trip per checkout)"),
    ("_do_commit_offsets", "Kafka offset commit per record"),
    ("send_to_procurement", "purchasing's handler itself"),
    ("socket.send", "socket send syscalls (every round trip)"),
    ("model_validate", "pydantic validation"),
]


def summary(session: Session) -> str:
    total = sum(t for _, t in session.frame_records)
    tasks: collections.defaultdict[str, float] = collections.defaultdict(float)  # seconds
    for stack, t in session.frame_records:
        joined = "\n".join(stack)
        tasks[next((label for m, label in TASKS if m in joined), "other")] += t
    lines = [f"wall {session.duration:.1f}s, CPU {session.cpu_time:.1f}s", "", "by task:"]
    lines += [
        f"  {v:6.2f}s {100 * v / total:5.1f}%  {k}"
        for k, v in sorted(tasks.items(), key=lambda kv: -kv[1])
    ]
    lines += ["", "named costs (inclusive, overlapping the tasks above):"]
    for marker, label in COSTS:
        v = sum(t for stack, t in session.frame_records if any(marker in f for f in stack))
        lines.append(f"  {v:6.2f}s {100 * v / total:5.1f}%  {label}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(summary(Session.load(sys.argv[1])))
