"""`procure dlq list|replay` on the real broker: a charge parked past its timeout is
dead-lettered, replayed once its cause is fixed and applied exactly once, however often
it is replayed; undecodable records are listed with their error headers."""

import io

import pytest

from procure_contracts.registry import spec_for_topic
from procure_devstack import factories as f
from procure_devstack.cli import main
from procure_devstack.dlq import (
    SelectionError,
    list_dead_letters,
    read_dead_letters,
    replay_dead_letters,
)
from procure_devstack.testing import KafkaProbe, eventually, running, token, unique
from procure_quotes.app import build

pytestmark = pytest.mark.kafka
T = spec_for_topic


def probe(settings) -> KafkaProbe:
    return KafkaProbe(settings.kafka_bootstrap_servers, settings.topic_prefix)


async def dead_letters_where(settings, check, count: int = 1):
    async def found():
        letters = [d for d in await read_dead_letters("quotes", settings) if check(d)]
        return letters if len(letters) >= count else None

    return await eventually(found, timeout=30.0, interval=0.5)


async def test_a_parked_charge_is_dead_lettered_then_replayed_after_the_fix_and_applied_once(
    service_settings,
) -> None:
    settings = service_settings("quotes", park_timeout_s=1.0)
    app, runtime = build(settings)
    billing = {"Authorization": f"Bearer {token(settings, 'billing')}"}
    so_id = unique("so-")
    orphan = f.charge(f.product(unit_cost="10.00"), 4)
    created = f.charge_created(orphan, sales_order_id=so_id)

    async with running(app, runtime) as http, probe(settings) as kafka:
        sent = await kafka.publish(T("charge.created"), created)
        [letter] = await dead_letters_where(settings, lambda d: d.event and d.event.id == sent.id)
        assert letter.header("x-error-type") == "parked-timeout"
        assert f"sales order {so_id} not seen yet" in letter.header("x-error-message")
        assert letter.header("x-original-topic") == settings.topic("charge.created")
        [original] = await kafka.read("charge.created", until=lambda got: len(got) >= 1)
        assert (letter.key, letter.value) == (original.key, original.value)  # byte for byte
        assert letter.header("x-original-offset") == str(original.offset)
        assert (await http.get(f"/charges/{orphan.id}", headers=billing)).status_code == 404

        # The fix: the sales order the charge waited for arrives.
        await kafka.publish(T("opportunity.won"), f.opportunity_won(sales_order_id=so_id))
        await eventually(
            lambda: _status(http, f"/sales-orders/{so_id}", billing, 200), timeout=30.0
        )
        assert (await http.get(f"/charges/{orphan.id}", headers=billing)).status_code == 404

        out = io.StringIO()
        replayed = await replay_dead_letters("quotes", [sent.id], settings=settings, out=out)
        assert replayed == [letter]
        origin = f"dlq.quotes@{letter.position}"
        assert f"replayed {origin} -> charge.created@0/" in out.getvalue()
        assert f"procurement.charge.created.v1 id={sent.id}" in out.getvalue()

        charge = await eventually(lambda: _json(http, f"/charges/{orphan.id}", billing))
        assert charge["sales_order_id"] == so_id
        assert {k: v for k, v in charge["units"].items() if v} == {"Need to Order/Fulfill": 4}
        assert [h["event_id"] for h in charge["history"]] == [sent.id]

        [_, again] = await kafka.read("charge.created", until=lambda got: len(got) >= 2)
        assert (again.key, again.value) == (original.key, original.value)
        assert again.headers == {"x-replayed-from": origin}

        # Replay again, by position this time: the inbox skips it. A later charge on the
        # same (single-partition) topic proves the consumer got past the replay.
        await replay_dead_letters("quotes", [letter.position], settings=settings, out=io.StringIO())
        marker = f.charge_created(f.charge(f.product(), 1))
        await kafka.publish(T("charge.created"), marker)
        await eventually(lambda: _status(http, f"/charges/{marker.charge.id}", billing, 200))

        routed = await kafka.read(
            "charge.need_order",
            until=lambda got: any(r.data["charge_id"] == marker.charge.id for r in got),
            settle=1.0,
        )
        assert [r.data["quantity"] for r in routed if r.data["charge_id"] == orphan.id] == [4]
        ready = await kafka.read("charge.ready", timeout=1.0)
        assert [r for r in ready if r.data["charge_id"] == orphan.id] == []
        charge = await _json(http, f"/charges/{orphan.id}", billing)
        assert [h["event_id"] for h in charge["history"]] == [sent.id]
        assert await read_dead_letters("quotes", settings) == [letter]  # nothing new


async def test_list_shows_an_undecodable_record_with_its_error_headers_and_replay_keeps_bytes(
    service_settings,
) -> None:
    settings = service_settings("quotes")
    app, runtime = build(settings)
    async with running(app, runtime), probe(settings) as kafka:
        sent_headers = [("content-type", b"text/plain"), ("x-attempts", b"9"), ("n", None)]
        await kafka.send_raw("charge.created", b"{not json", key=b"k-1", headers=sent_headers)
        [letter] = await dead_letters_where(settings, lambda d: True)
        assert letter.raw_headers[:2] == (("content-type", b"text/plain"), ("n", None))
        assert letter.header("x-attempts") == "1"  # the runtime's mark, not the record's

        out = io.StringIO()
        assert await list_dead_letters("quotes", settings=settings, out=out) == [letter]
        line, summary = out.getvalue().splitlines()
        position, failed_at, error_type, source, attempts, *rest = line.split(" ")
        assert (position, error_type, source, attempts) == (
            "0/0",
            "invalid-json",
            "charge.created@0/0",
            "attempts=1",
        )
        assert failed_at == letter.header("x-failed-at") and failed_at.startswith("20")
        assert " ".join(rest).startswith("<undecodable 9 bytes> '<root>: Invalid JSON")
        assert summary == f"1 dead letter(s) on {settings.topic('dlq.quotes')}"

        # Replayed by offset, it is dead-lettered again, still byte for byte.
        await replay_dead_letters("quotes", ["0"], settings=settings, out=io.StringIO())
        letters = await dead_letters_where(settings, lambda d: True, count=2)
        assert [(d.key, d.value) for d in letters] == [(b"k-1", b"{not json")] * 2
        assert letters[1].header("x-original-offset") == "1"
        # The replay carries the record's own headers, none of the runtime's marks.
        [_, replayed] = await kafka.read("charge.created", until=lambda got: len(got) >= 2)
        assert replayed.raw_headers == (
            ("content-type", b"text/plain"),
            ("n", None),
            ("x-replayed-from", f"dlq.quotes@{letter.position}".encode()),
        )

        with pytest.raises(SelectionError, match="no dead letter"):
            await replay_dead_letters("quotes", ["no-such-event"], settings=settings)
        assert len(await read_dead_letters("quotes", settings)) == 2


async def test_a_tombstone_is_listed_as_one_and_replayed_as_one(service_settings) -> None:
    settings = service_settings("quotes")
    app, runtime = build(settings)
    async with running(app, runtime), probe(settings) as kafka:
        await kafka.send_raw("charge.created", None, key=b"k-1")
        [letter] = await dead_letters_where(settings, lambda d: True)
        assert letter.value is None and letter.event is None

        out = io.StringIO()
        await list_dead_letters("quotes", settings=settings, out=out)
        line = out.getvalue().splitlines()[0]
        assert " invalid-json charge.created@0/0 attempts=1 <tombstone: no value> " in line

        await replay_dead_letters("quotes", ["0"], settings=settings, out=io.StringIO())
        letters = await dead_letters_where(settings, lambda d: True, count=2)
        assert [(d.key, d.value) for d in letters] == [(b"k-1", None)] * 2


def test_the_procure_command_lists_replays_all_and_refuses_unknown_ids(
    service_settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = service_settings("quotes")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", settings.kafka_bootstrap_servers)
    monkeypatch.setenv("PROCURE_TOPIC_PREFIX", settings.topic_prefix)
    assert main(["dlq", "list", "quotes"]) == 0
    assert capsys.readouterr().out == f"0 dead letter(s) on {settings.topic('dlq.quotes')}\n"
    assert main(["dlq", "replay", "quotes", "--id", "nope"]) == 2
    assert "no dead letter with position or event id 'nope'" in capsys.readouterr().err
    # The spec's form, with no --id: every dead letter (here none).
    assert main(["dlq", "replay", "quotes"]) == 0
    assert capsys.readouterr().out == "nothing to replay\n"


async def _status(http, url: str, headers: dict[str, str], status: int) -> bool:
    return (await http.get(url, headers=headers)).status_code == status


async def _json(http, url: str, headers: dict[str, str]):
    response = await http.get(url, headers=headers)
    return response.json() if response.status_code == 200 else None
