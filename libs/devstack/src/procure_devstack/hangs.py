"""What a test's asyncio tasks were awaiting when it ran into its timeout.

pytest-timeout prints the threads' stacks only. A test hung on an await shows nothing
there but the event loop idle in `select`: the coroutine that waits for ever is not on any
thread's stack. So shortly before the timeout a watchdog thread takes a snapshot of every
task's await chain (coroutine by coroutine down to the future it waits for), and a test
that then fails carries it in its report, as the section "asyncio tasks near the timeout"."""

import asyncio
import gc
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import pytest

SNAPSHOT = pytest.StashKey[list[str]]()
SECTION = "asyncio tasks near the timeout"
#: The snapshot is taken at this share of the test's timeout.
AT = 0.9
#: The deepest await chain followed.
DEPTH = 80


def _frame(awaitable: Any) -> FrameType | None:
    for name in ("cr_frame", "gi_frame", "ag_frame"):
        frame = getattr(awaitable, name, None)
        if frame is not None:
            return frame
    return None


def _awaiting(awaitable: Any) -> Any:
    for name in ("cr_await", "gi_yieldfrom", "ag_await"):
        inner = getattr(awaitable, name, None)
        if inner is not None:
            return inner
    return None


def await_chain(coro: Any) -> Iterator[str]:
    """`coro`'s frames from the task's own coroutine down to the innermost one."""
    current, depth = coro, 0
    while current is not None and depth < DEPTH:
        depth += 1
        frame = _frame(current)
        if frame is None:  # a future's iterator: the task says which future (below)
            return
        code = frame.f_code
        yield f"  {code.co_filename}:{frame.f_lineno} in {code.co_qualname}"
        current = _awaiting(current)


def describe_tasks(loop: asyncio.AbstractEventLoop) -> list[str]:
    lines: list[str] = []
    for task in sorted(asyncio.all_tasks(loop), key=lambda t: t.get_name()):
        lines.append(f"task {task.get_name()}:")
        lines.extend(await_chain(task.get_coro()))
        # The future the task is suspended on (asyncio keeps it, privately, to cancel it).
        waiting = getattr(task, "_fut_waiter", None)
        if waiting is not None:
            lines.append(f"  awaiting {waiting!r}"[:500])
    return lines


def _running_loops() -> list[asyncio.AbstractEventLoop]:
    # The loop is pytest-asyncio's (one per session or per test): found as it is.
    return [
        o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop) and o.is_running()
    ]


def _read(loop: asyncio.AbstractEventLoop) -> list[str]:
    taken: list[str] = []
    done = threading.Event()

    def take() -> None:
        taken.extend(describe_tasks(loop))
        done.set()

    loop.call_soon_threadsafe(take)
    if done.wait(2.0):
        return taken
    return [
        "(the loop did not answer: read from the watchdog's thread)",
        *describe_tasks(loop),
    ]


def snapshot() -> list[str]:
    """Every running loop's tasks, read on the loop's own thread when it answers within
    two seconds (an idle loop does), else from here (a loop stuck in a blocking call)."""
    lines: list[str] = []
    for loop in _running_loops():
        try:
            lines += [f"loop {loop!r}:", *_read(loop)]
        except RuntimeError:  # closed meanwhile
            continue
    return lines or ["(no running event loop)"]


def timeout_of(item: pytest.Item) -> float | None:
    marker = item.get_closest_marker("timeout")
    if marker is not None and marker.args:
        value = marker.args[0]
    else:
        value = item.config.getoption("timeout", None) or item.config.getini("timeout")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds > 0 else None


class Watchdog:
    """Takes the snapshot into the item's stash if the test is still running at `AT` of
    its timeout."""

    def __init__(self, item: pytest.Item) -> None:
        self.item = item
        self.finished = threading.Event()
        self.thread: threading.Thread | None = None

    def __enter__(self) -> "Watchdog":
        timeout = timeout_of(self.item)
        if timeout is not None:
            self.thread = threading.Thread(
                target=self._watch, args=(timeout * AT,), name="hang-watchdog", daemon=True
            )
            self.thread.start()
        return self

    def _watch(self, after: float) -> None:
        if not self.finished.wait(after):
            try:
                self.item.stash[SNAPSHOT] = snapshot()
            except Exception as exc:  # a diagnosis: never a failure of its own
                self.item.stash[SNAPSHOT] = [f"(no snapshot: {exc!r})"]

    def __exit__(self, *exc: object) -> None:
        self.finished.set()


def add_to_report(item: pytest.Item, report: pytest.TestReport) -> None:
    lines = item.stash.get(SNAPSHOT, None)
    if lines is not None and report.failed:
        report.sections.append((SECTION, "\n".join(lines)))
        del item.stash[SNAPSHOT]
