"""A background loop cancelled at a stop stops, even when what it waits for comes in the
same instant. On Python 3.11 `asyncio.wait_for` returns the inner result when the inner
future and the cancel land in one turn of the loop, and the cancel is lost (fixed in 3.12,
which builds `wait_for` on `asyncio.timeout`). The outbox relay, woken by a commit just
before a stop, went on relaying, and the stop waited for it for ever: two CI runs hung
300 s in a test's stop that way. The runtime waits with `asyncio.timeout`, which counts
cancels, and never with `wait_for`."""

import ast
import asyncio
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition

from procure_devstack.testing import eventually, fed_directly
from procure_runtime.offsets import OffsetCommitter
from procure_runtime.tasks import cancel_and_wait

ROOT = Path(__file__).resolve().parents[3]
STOPPED_WITHIN_S = 5.0


async def _stopped_in_time(
    comes_in: Callable[[], None], stop: Coroutine[Any, Any, None], task: asyncio.Task[Any]
) -> bool:
    """Whether `stop` finished within `STOPPED_WITHIN_S` when what `task` waits for
    `comes_in` in the same turn of the loop as the stop's cancel. Not under a timeout of
    the test's own: its cancel would reach `task` through the stop's `await` and end it."""
    asyncio.get_running_loop().call_soon(comes_in)
    stopping = asyncio.ensure_future(stop)  # its first step, the cancel, runs right after
    done, _ = await asyncio.wait({stopping}, timeout=STOPPED_WITHIN_S)
    if not done:  # leave nothing running: this second cancel is not lost
        task.cancel()
        await asyncio.wait({stopping}, timeout=STOPPED_WITHIN_S)
    return bool(done)


async def _waiting(event: asyncio.Event) -> bool:
    """Whether a task waits on `event` now (asyncio keeps its waiters, privately)."""
    return bool(event._waiters)


async def test_a_relay_woken_as_it_is_stopped_stops(tmp_path: Path) -> None:
    runtime = await fed_directly("shipping", f"sqlite+aiosqlite:///{tmp_path}/r.db", tmp_path)
    relay = runtime.relay
    relay.idle_wait_s = 3600
    relay.start()
    try:
        await eventually(lambda: _waiting(relay._wake), timeout=10)  # idle, nothing to send
        task = relay._task
        assert task is not None
        assert await _stopped_in_time(relay.wake, relay.stop(), task)  # a commit came
        assert task.cancelled()
    finally:
        await runtime.db.dispose()


async def test_the_parking_lot_woken_as_it_is_stopped_stops(tmp_path: Path) -> None:
    runtime = await fed_directly("shipping", f"sqlite+aiosqlite:///{tmp_path}/p.db", tmp_path)
    consumer = runtime.consumer
    consumer.start_parking()
    try:
        await eventually(lambda: _waiting(consumer._parking_wake), timeout=10)
        task = consumer._parking_task
        assert task is not None
        # An event applied that a parked one may wait on.
        assert await _stopped_in_time(consumer._parking_wake.set, consumer.stop_parking(), task)
        assert task.cancelled()
    finally:
        await runtime.db.dispose()


class _Consumer:
    """A group coordinator that answers a commit when told to."""

    def __init__(self) -> None:
        self.answer = asyncio.Event()
        self.asked = asyncio.Event()

    def assignment(self) -> set[TopicPartition]:
        return {TopicPartition("a", 0)}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.asked.set()
        await self.answer.wait()


async def test_the_committer_answered_as_it_is_stopped_stops() -> None:
    consumer = _Consumer()
    committer = OffsetCommitter(interval_s=0)
    record = ConsumerRecord("a", 0, 7, 0, 0, None, b"", None, 0, 1, ())
    committer.done(consumer, [record])  # type: ignore[arg-type]
    await asyncio.wait_for(consumer.asked.wait(), 5)  # the background commit is in flight
    task = committer._task
    assert task is not None
    # The coordinator answers.
    assert await _stopped_in_time(consumer.answer.set, committer.stop(), task)
    assert task.cancelled()
    assert committer.pending == {TopicPartition("a", 0): 8}  # kept: may not have landed


async def _slow_to_stop(cleanup: asyncio.Event) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await cleanup.wait()  # a close that takes a while
        raise


async def test_a_stopped_tasks_cancel_ends_with_it() -> None:
    cleanup = asyncio.Event()
    task = asyncio.create_task(_slow_to_stop(cleanup))
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.01)
    cleanup.set()
    assert await stopping is None
    assert task.cancelled()


async def test_a_cancel_of_the_one_stopping_a_task_is_passed_on() -> None:
    """A stop under a timeout of its caller's: the stop's wait for a background task
    swallowed the caller's cancel (`suppress(CancelledError)`), and went on past it."""
    task = asyncio.create_task(_slow_to_stop(asyncio.Event()))
    await asyncio.sleep(0)
    stopping = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.01)
    stopping.cancel()  # the caller's timeout
    done, _ = await asyncio.wait({stopping}, timeout=STOPPED_WITHIN_S)
    assert stopping in done and stopping.cancelled()
    assert task.cancelled()  # the cancel reached the task too: nothing left running


def _swallows_a_cancel(node: ast.AST) -> bool:
    """`contextlib.suppress(asyncio.CancelledError, ...)`"""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "suppress"
        and any(isinstance(a, ast.Attribute) and a.attr == "CancelledError" for a in node.args)
    )


def _is_wait_for(node: ast.AST) -> bool:
    """`asyncio.wait_for`"""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "wait_for"
        and isinstance(node.value, ast.Name)
        and node.value.id == "asyncio"
    )


def _found(pattern: Callable[[ast.AST], bool]) -> dict[str, list[int]]:
    """The project's files with lines where `pattern` matches."""
    found = {}
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        if lines := [n.lineno for n in ast.walk(tree) if pattern(n)]:  # type: ignore[attr-defined]
            found[str(path.relative_to(ROOT))] = lines
    return found


def _sources() -> list[Path]:
    sources = [
        *ROOT.glob("libs/*/src/**/*.py"),
        *ROOT.glob("services/*/src/**/*.py"),
        *ROOT.glob("contracts/src/**/*.py"),
        *ROOT.glob("bench/**/*.py"),
    ]
    assert len(sources) > 50  # the globs found the code
    return sources


def test_no_code_of_the_project_waits_with_asyncio_wait_for() -> None:
    assert _found(_is_wait_for) == {}, (
        "use `async with asyncio.timeout(...)`: wait_for can lose a cancel"
    )


def test_no_code_of_the_project_swallows_a_cancel_when_it_stops_a_task() -> None:
    assert _found(_swallows_a_cancel) == {}, "use `procure_runtime.tasks.cancel_and_wait`"
