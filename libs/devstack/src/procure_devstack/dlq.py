"""``procure dlq list|replay SERVICE``: look at a service's dead letters and send them back.

A dead letter is the original record, byte for byte and with its headers, on
``dlq.<service>`` with the ``x-original-*`` / ``x-error-*`` headers the runtime adds
(spec section 4). ``list`` prints one line per dead letter, oldest first per partition,
and stops at the end of the topic. ``replay`` republishes the selected ones to their ``x-original-topic`` with
the same key, value and headers (the runtime's ``x-*`` marks dropped) plus
``x-replayed-from: dlq.<service>@<partition>/<offset>``.

Replaying is safe: the event id is unchanged, so a consumer that applied the event
already skips it (inbox). Select dead letters by position (``P/OFFSET``, or a bare
``OFFSET`` when only one partition has it and no event has that id), by event id, or
``--all``. An event dead-lettered several times is replayed once per run (its latest
dead letter), and so is a record that is no event (undecodable, a tombstone) dead-lettered
several times byte for byte: a replay of it that fails again adds a copy, and replaying
every copy each run doubled them.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from procure_devstack.cli import SERVICES, command

if TYPE_CHECKING:
    from procure_contracts import CloudEvent
    from procure_runtime.settings import ServiceSettings

__all__ = [
    "DeadLetter",
    "format_dead_letter",
    "list_dead_letters",
    "read_dead_letters",
    "replay_dead_letters",
    "select",
]

MESSAGE_WIDTH = 100
IDLE_POLLS = 6  # empty 0.5 s polls before trusting the consumer's position


@dataclass(frozen=True)
class DeadLetter:
    """One record of ``dlq.<service>``."""

    topic: str  # the prefixed DLQ topic
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None  # None: a tombstone, dead-lettered as it came
    headers: dict[str, str] = field(default_factory=dict)
    # As they came, in order: the original record's headers besides the runtime's.
    raw_headers: tuple[tuple[str, bytes | None], ...] = ()

    @property
    def position(self) -> str:
        return f"{self.partition}/{self.offset}"

    @property
    def event(self) -> CloudEvent | None:
        """The envelope, when the value decodes as one."""
        from procure_contracts import CloudEvent

        if self.value is None:
            return None
        try:
            return CloudEvent.from_bytes(self.value)
        except ValueError:  # pydantic's ValidationError included
            return None

    def header(self, name: str, default: str = "-") -> str:
        return self.headers.get(name, default)


def _settings(service: str) -> ServiceSettings:
    from procure_runtime.settings import load_settings

    # A database_url keeps load_settings from creating ./var for an SQLite file.
    return load_settings(service, database_url="none://")


def _dlq_name(service: str, settings: ServiceSettings) -> str:
    from procure_contracts.registry import dlq_topic

    return settings.topic(dlq_topic(service))


async def read_dead_letters(service: str, settings: ServiceSettings) -> list[DeadLetter]:
    """Every record on the service's DLQ from the beginning up to its current end.

    No consumer group and no commits: reading changes nothing. A missing topic means
    nothing was dead-lettered (or another ``PROCURE_TOPIC_PREFIX``): an empty list.
    """
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.admin import AIOKafkaAdminClient

    from procure_runtime.kafka import client_kwargs

    name = _dlq_name(service, settings)
    kwargs = client_kwargs(settings)
    admin = AIOKafkaAdminClient(client_id="procure-dlq-admin", **kwargs)
    await admin.start()
    try:
        # All-topics metadata: asking for the named topic could auto-create it.
        metas = [m for m in await admin.describe_topics() if m["topic"] == name]
    finally:
        await admin.close()
    if not metas:
        return []
    if code := metas[0]["error_code"]:  # e.g. 29, not authorized: not "none" (exit 0)
        raise DlqUnreadable(f"cannot read {name}: Kafka error code {code}")
    tps = [TopicPartition(name, p["partition"]) for p in metas[0]["partitions"]]
    consumer = AIOKafkaConsumer(
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        client_id="procure-dlq",
        **kwargs,
    )
    await consumer.start()
    letters: list[DeadLetter] = []
    try:
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        # Explicit offsets: seek_to_beginning() races with the reset assign() starts.
        starts = await consumer.beginning_offsets(tps)
        for tp, first in starts.items():
            consumer.seek(tp, first)
        pending = {tp for tp in tps if ends[tp] > starts[tp]}
        idle = 0
        while pending:
            batches = await consumer.getmany(timeout_ms=500)
            idle = 0 if any(batches.values()) else idle + 1
            for tp, records in batches.items():
                for r in records:
                    if r.offset < ends[tp]:
                        raw = tuple(r.headers or ())
                        headers = {k: (v or b"").decode(errors="replace") for k, v in raw}
                        letters.append(
                            DeadLetter(name, r.partition, r.offset, r.key, r.value, headers, raw)
                        )
                    if r.offset + 1 >= ends[tp]:
                        pending.discard(tp)
            if idle >= IDLE_POLLS:
                # Nothing more arrives although the end was not seen: the last offsets
                # hold transaction markers, which take offsets but are never returned.
                pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
                idle = 0
    finally:
        await consumer.stop()
    return sorted(letters, key=lambda d: (d.partition, d.offset))


def _short(text: str, width: int = MESSAGE_WIDTH) -> str:
    text = " ".join(text.split())  # tracebacks and validation messages span lines
    return text if len(text) <= width else text[: width - 1] + "…"


def format_dead_letter(letter: DeadLetter, prefix: str = "") -> str:
    """``P/OFFSET failed-at error-type topic@partition/offset attempts=N type id=… msg``."""
    original = letter.header("x-original-topic").removeprefix(prefix)
    source = (
        f"{original}@{letter.header('x-original-partition')}/{letter.header('x-original-offset')}"
    )
    event = letter.event
    if "x-value-omitted" in letter.headers:  # too large for the DLQ (the runtime's outbox)
        what = f"<value omitted: {letter.headers['x-value-omitted']} bytes, see its source>"
    elif event:
        what = f"{event.type} id={event.id}"
    elif letter.value is None:
        what = "<tombstone: no value>"
    else:
        what = f"<undecodable {len(letter.value)} bytes>"
    return " ".join(
        [
            letter.position,
            letter.header("x-failed-at"),
            letter.header("x-error-type"),
            source,
            f"attempts={letter.header('x-attempts')}",
            what,
            repr(_short(letter.header("x-error-message", ""))),
        ]
    )


async def list_dead_letters(
    service: str, *, settings: ServiceSettings | None = None, out: TextIO | None = None
) -> list[DeadLetter]:
    """Print the service's dead letters, one line each; returns them."""
    settings = settings or _settings(service)
    out = out or sys.stdout
    letters = await read_dead_letters(service, settings)
    for letter in letters:
        print(format_dead_letter(letter, settings.topic_prefix), file=out)
    print(f"{len(letters)} dead letter(s) on {_dlq_name(service, settings)}", file=out)
    return letters


class DlqUnreadable(RuntimeError):
    """The broker knows the dead-letter topic but will not describe it."""


class SelectionError(ValueError):
    """An ``--id`` that matches no dead letter, or an ambiguous bare offset."""


def select(letters: Sequence[DeadLetter], ids: Sequence[str], *, all_: bool) -> list[DeadLetter]:
    """The dead letters ``ids`` (positions or event ids) name, or every one with ``all_``;
    one per event id (the latest), in DLQ order."""
    if all_:
        chosen = list(letters)
    else:
        chosen = []
        for wanted in ids:
            matches = _matching(letters, wanted.strip())
            if not matches:
                raise SelectionError(f"no dead letter with position or event id {wanted!r}")
            chosen += [m for m in matches if m not in chosen]
    latest: dict[object, DeadLetter] = {}
    for letter in chosen:
        event = letter.event
        same = event.id if event else (letter.header("x-original-topic"), letter.key, letter.value)
        latest[same] = letter
    keep = set(map(id, latest.values()))
    return [letter for letter in letters if id(letter) in keep]


def _matching(letters: Sequence[DeadLetter], wanted: str) -> list[DeadLetter]:
    by_id = [d for d in letters if (e := d.event) is not None and e.id == wanted]
    if wanted.isdigit():  # an offset, or an event id made of digits (any system's ids)
        hits = [d for d in letters if d.offset == int(wanted)]
        if hits and by_id:
            raise SelectionError(
                f"{wanted!r} is an event id and an offset ({hits[0].position}): give P/OFFSET "
                "for the position"
            )
        if len(hits) > 1:
            shown = ", ".join(d.position for d in hits)
            raise SelectionError(
                f"offset {wanted} is on several partitions ({shown}): give P/OFFSET"
            )
        return hits or by_id
    by_position = [d for d in letters if d.position == wanted]
    return by_position or by_id


async def replay_dead_letters(
    service: str,
    ids: Sequence[str] = (),
    *,
    all_: bool = False,
    settings: ServiceSettings | None = None,
    out: TextIO | None = None,
) -> list[DeadLetter]:
    """Republish the selected dead letters to their original topics; returns them.

    Raises ``SelectionError`` (before sending anything) when an id matches nothing or a
    selected dead letter has no ``x-original-topic``.
    """
    from aiokafka import AIOKafkaProducer

    from procure_runtime.consumer import DEAD_LETTER_HEADERS
    from procure_runtime.kafka import client_kwargs

    if not all_ and not ids:
        raise SelectionError("name dead letters with --id, or give --all")
    settings = settings or _settings(service)
    out = out or sys.stdout
    letters = select(await read_dead_letters(service, settings), ids, all_=all_)
    if missing := [d.position for d in letters if "x-original-topic" not in d.headers]:
        raise SelectionError(f"no x-original-topic header on {', '.join(missing)}")
    for letter in [d for d in letters if "x-value-omitted" in d.headers]:
        letters.remove(letter)
        print(
            f"skipped {letter.position}: too large to dead-letter, it holds no value; the "
            f"original is {letter.header('x-original-topic')}@"
            f"{letter.header('x-original-partition')}/{letter.header('x-original-offset')}",
            file=out,
        )
    if not letters:
        print("nothing to replay", file=out)
        return []
    producer = AIOKafkaProducer(
        client_id="procure-dlq-replay",
        acks="all",
        enable_idempotence=True,
        **client_kwargs(settings),
    )
    await producer.start()
    try:
        for letter in letters:
            origin = f"{letter.topic.removeprefix(settings.topic_prefix)}@{letter.position}"
            meta = await producer.send_and_wait(
                letter.headers["x-original-topic"],
                letter.value,
                key=letter.key,
                # The original record's headers (the runtime's marks dropped), and where
                # this copy came from.
                headers=[
                    *(
                        (k, v)
                        for k, v in letter.raw_headers
                        if k not in DEAD_LETTER_HEADERS and k != "x-replayed-from"
                    ),
                    ("x-replayed-from", origin.encode()),
                ],
            )
            event = letter.event
            what = f"{event.type} id={event.id}" if event else "<undecodable>"
            target = meta.topic.removeprefix(settings.topic_prefix)
            print(f"replayed {origin} -> {target}@{meta.partition}/{meta.offset} {what}", file=out)
    finally:
        await producer.stop()
    print(f"{len(letters)} dead letter(s) replayed", file=out)
    return letters


# --------------------------------------------------------------------------- the CLI


def _run(coro: object) -> int:
    from aiokafka.errors import KafkaError

    try:
        asyncio.run(coro)  # type: ignore[arg-type]
    except SelectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KafkaError, OSError, DlqUnreadable) as exc:  # unreachable, bad security, ACLs
        print(f"error: {exc!r}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def cmd_dlq(args: argparse.Namespace) -> int:
    if args.action == "list":
        return _run(list_dead_letters(args.service))
    # `procure dlq replay SERVICE`, the spec's form, replays them all; --id narrows it.
    return _run(replay_dead_letters(args.service, args.ids, all_=args.all or not args.ids))


@command
def _register_dlq(sub: object) -> None:
    p = sub.add_parser(  # type: ignore[attr-defined]
        "dlq",
        help="list a service's dead letters, or replay them to their original topics",
        description="Dead letters live on <PROCURE_TOPIC_PREFIX>dlq.<service>. `list` prints "
        "one line each (position P/OFFSET, failed-at, error type, original topic@partition/"
        "offset, attempts, event type and id, error message). `replay` republishes the "
        "selected ones byte for byte with their key; consumers skip events they applied.",
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name in ("list", "replay"):
        a = actions.add_parser(name, help=f"{name} dead letters of SERVICE")
        a.add_argument("service", choices=SERVICES, metavar="SERVICE", help=", ".join(SERVICES))
        a.set_defaults(handler=cmd_dlq, ids=[], all=False)
    replay = actions.choices["replay"]
    chosen = replay.add_mutually_exclusive_group()
    chosen.add_argument(
        "--id",
        dest="ids",
        action="append",
        metavar="EVENT_OR_OFFSET",
        help="event id, P/OFFSET, or OFFSET; repeat --id for several",
    )
    chosen.add_argument(
        "--all", action="store_true", help="replay every dead letter (the default without --id)"
    )
