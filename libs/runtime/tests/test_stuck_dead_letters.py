"""A dead letter the broker keeps refusing holds its partition (nothing after it is
applied, nothing is dropped): past a broker's restart, that is an operator's problem,
and it says so (an error line, `procure_dead_letters_stuck`), instead of a warning per
attempt that looks like any broker hiccup."""

from collections.abc import Callable
from pathlib import Path

from procure_devstack.testing import fed_directly
from procure_runtime import consumer as consumer_module
from procure_runtime import metrics
from procure_runtime.consumer import STUCK_AFTER, Record


class _Lines:
    """The consumer's log lines, as (level, event, fields): structlog's own capture
    misses a logger cached by an earlier test's configuration."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str, dict]] = []

    def __getattr__(self, level: str):
        return lambda event, **fields: self.lines.append((level, event, fields))


async def test_a_dead_letter_refused_again_and_again_is_reported_stuck_until_it_goes(
    database_url: Callable[[str], str], tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("PROCURE_RETRY_BACKOFF_S", "0.0001")
    runtime = await fed_directly("receiving", database_url("stuck"), tmp_path)
    stuck = metrics.DEAD_LETTERS_STUCK.labels("receiving")
    seen: list[float] = []
    sent: list[bytes | None] = []

    async def refusing(value, topic, *, key, headers) -> None:
        seen.append(stuck._value.get())
        if len(seen) <= STUCK_AFTER + 2:
            raise PermissionError("TopicAuthorizationFailedError: dlq.receiving")
        sent.append(value)

    runtime.consumer.publish = refusing
    logs = _Lines()
    monkeypatch.setattr(consumer_module, "log", logs)
    try:
        await runtime.consumer.process(
            Record(topic="po.submitted", partition=0, offset=7, key=b"k", value=b"garbage")
        )
    finally:
        await runtime.db.engine.dispose()
    assert sent == [b"garbage"]  # never dropped
    assert seen[:STUCK_AFTER] == [0.0] * STUCK_AFTER
    assert seen[STUCK_AFTER:] == [1.0, 1.0, 1.0]  # stuck from the 10th refusal on
    assert stuck._value.get() == 0.0  # and no longer, once taken
    retried = [level for level, event, _ in logs.lines if "publish failed" in event]
    assert retried == ["warning"] * (STUCK_AFTER - 1) + ["debug"] * 2  # once stuck: quiet
    [error] = [fields for level, _, fields in logs.lines if level == "error"]
    assert (error["topic"], error["partition"], error["offset"]) == ("po.submitted", 0, 7)
