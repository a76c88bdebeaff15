"""Which dead letters `procure dlq replay` picks, without a broker: event ids made of
digits are found, an id that is also an offset is refused as ambiguous, and a record
that is no event is replayed once per run however many copies of it the DLQ holds."""

import argparse
import io
from typing import Any

import pytest

from procure_contracts import events as ev
from procure_contracts import new_event
from procure_contracts.registry import spec_for_topic
from procure_devstack import dlq
from procure_devstack.dlq import DeadLetter, SelectionError, select


def letter(offset: int, value: bytes | None, partition: int = 0) -> DeadLetter:
    headers = {"x-original-topic": "charge.created", "x-error-type": "invalid-json"}
    return DeadLetter("dlq.quotes", partition, offset, b"k", value, headers)


def event(event_id: str) -> bytes:
    spec = spec_for_topic("opportunity.lost")
    data = ev.OpportunityLostV1(opportunity_id="opp-1")
    return new_event(spec.type, data, source="/crm", subject="opp-1", event_id=event_id).to_bytes()


def test_an_event_id_made_of_digits_is_found() -> None:
    letters = [letter(0, event("e-1")), letter(1, event("1001"))]
    assert select(letters, ["1001"], all_=False) == [letters[1]]
    assert select(letters, ["1"], all_=False) == [letters[1]]  # offset 1: no event "1"


def test_an_id_that_is_also_an_offset_is_ambiguous() -> None:
    letters = [letter(0, event("1")), letter(1, event("e-2"))]
    with pytest.raises(SelectionError, match="event id and an offset"):
        select(letters, ["1"], all_=False)
    assert select(letters, ["0/1"], all_=False) == [letters[1]]


def test_copies_of_a_record_that_is_no_event_are_replayed_once() -> None:
    letters = [
        letter(0, b"{not json"),
        letter(1, b"{other"),
        letter(2, b"{not json"),  # its replay, dead-lettered again
        letter(3, None),
        letter(4, None),
        letter(5, event("e-1")),
        letter(6, event("e-1")),
    ]
    assert [d.offset for d in select(letters, [], all_=True)] == [1, 2, 4, 6]


class RefusingAdmin:
    """A principal without Describe on the topic: metadata answers error 29."""

    def __init__(self, **kw: Any) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def describe_topics(self) -> list[dict[str, Any]]:
        return [{"topic": "dlq.quotes", "error_code": 29, "partitions": []}]


async def test_a_dlq_the_broker_will_not_describe_is_an_error(monkeypatch: Any) -> None:
    monkeypatch.setattr("aiokafka.admin.AIOKafkaAdminClient", RefusingAdmin)
    with pytest.raises(dlq.DlqUnreadable, match="error code 29"):
        await dlq.read_dead_letters("quotes", dlq._settings("quotes"))


def test_listing_a_dlq_the_broker_will_not_describe_exits_1(
    monkeypatch: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not "0 dead letter(s)" and exit 0, which reads as a clean topic."""
    monkeypatch.setattr("aiokafka.admin.AIOKafkaAdminClient", RefusingAdmin)
    assert dlq.cmd_dlq(argparse.Namespace(action="list", service="quotes")) == 1
    captured = capsys.readouterr()
    assert "error code 29" in captured.err and "dead letter(s)" not in captured.out


async def test_a_dead_letter_without_its_value_is_listed_and_never_replayed(
    monkeypatch: Any,
) -> None:
    """Too large to dead-letter (the runtime's outbox): it says so, and a replay, which
    would publish an empty value in the original's place, skips it."""
    omitted = DeadLetter(
        "dlq.quotes",
        0,
        7,
        b"k",
        b"",
        {
            "x-original-topic": "charge.created",
            "x-original-partition": "2",
            "x-original-offset": "41",
            "x-error-type": "invalid-json",
            "x-value-omitted": "3000000",
        },
    )
    assert "<value omitted: 3000000 bytes, see its source>" in dlq.format_dead_letter(omitted)

    async def read(service: str, settings: Any) -> list[DeadLetter]:
        return [omitted]

    monkeypatch.setattr(dlq, "read_dead_letters", read)
    out = io.StringIO()
    assert await dlq.replay_dead_letters("quotes", all_=True, out=out) == []
    assert out.getvalue().splitlines() == [
        "skipped 0/7: too large to dead-letter, it holds no value; the original is "
        "charge.created@2/41",
        "nothing to replay",
    ]
