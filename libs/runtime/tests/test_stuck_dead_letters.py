"""A dead letter the broker keeps refusing holds its partition (nothing after it is
applied, nothing is dropped): past a broker's restart, that is an operator's problem,
and it says so (an error line, `procure_dead_letters_stuck`), instead of a warning per
attempt that looks like any broker hiccup."""

from collections.abc import Callable
from pathlib import Path

from structlog.testing import capture_logs

from procure_devstack.testing import fed_directly
from procure_runtime import metrics
from procure_runtime.consumer import STUCK_AFTER, Record


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
    try:
        with capture_logs() as logs:
            await runtime.consumer.process(
                Record(topic="po.submitted", partition=0, offset=7, key=b"k", value=b"garbage")
            )
    finally:
        await runtime.db.engine.dispose()
    assert sent == [b"garbage"]  # never dropped
    assert seen[:STUCK_AFTER] == [0.0] * STUCK_AFTER
    assert seen[STUCK_AFTER:] == [1.0, 1.0, 1.0]  # stuck from the 10th refusal on
    assert stuck._value.get() == 0.0  # and no longer, once taken
    errors = [e for e in logs if e["log_level"] == "error"]
    assert len(errors) == 1
    assert (errors[0]["topic"], errors[0]["partition"], errors[0]["offset"]) == (
        "po.submitted",
        0,
        7,
    )
