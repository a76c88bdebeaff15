"""The procure CLI: `token` (claims, secret, role validation) and `tail` against a real broker."""

from __future__ import annotations

import asyncio
import io
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import jwt
import pytest

from procure_contracts import CloudEvent
from procure_devstack.cli import (
    ManagedProcess,
    Stack,
    StackPaths,
    main,
    parse_roles,
    summarize_data,
    tail,
)
from procure_devstack.kafka import LocalKafka
from procure_devstack.ports import free_ports
from procure_notifier.sender import SmtpSettings
from procure_runtime.auth import ROLES
from procure_runtime.settings import DEV_JWT_SECRET, load_settings

# ---------------------------------------------------------------------------- token


def _token(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    assert main(["token", *argv]) == 0
    out = capsys.readouterr().out.strip()
    assert out.count(".") == 2 and "\n" not in out
    return out


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the dev secret
def test_token_claims_with_the_configured_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROCURE_JWT_SECRET", "a-test-secret-that-is-long-enough-1234")
    token = _token(
        capsys,
        "--roles",
        "sales, billing,sales",
        "--sub",
        "p-42",
        "--name",
        "Pat Buyer",
        "--email",
        "pat@example.com",
        "--ttl",
        "120",
    )
    claims = jwt.decode(token, "a-test-secret-that-is-long-enough-1234", algorithms=["HS256"])
    assert claims["sub"] == "p-42"
    assert claims["name"] == "Pat Buyer"
    assert claims["email"] == "pat@example.com"
    assert claims["roles"] == ["sales", "billing"]
    assert claims["exp"] - claims["iat"] == 120
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, DEV_JWT_SECRET, algorithms=["HS256"])


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the dev secret
def test_token_defaults_to_the_dev_secret(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROCURE_JWT_SECRET", raising=False)
    claims = jwt.decode(_token(capsys, "--roles", "admin"), DEV_JWT_SECRET, algorithms=["HS256"])
    assert claims["roles"] == ["admin"]
    assert claims["sub"] == "dev-user"
    assert claims["email"] == "dev-user@example.com"
    assert claims["exp"] - claims["iat"] == 12 * 3600


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ("sales,superuser", "unknown role 'superuser'"),
        ("root,god", "unknown roles 'root', 'god'"),
        (" , ", "at least one role"),
    ],
)
def test_token_rejects_bad_roles(
    capsys: pytest.CaptureFixture[str], roles: str, message: str
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["token", "--roles", roles])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert "known roles: " + ", ".join(ROLES) in err


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the dev secret
def test_token_takes_roles_as_separate_words_too(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROCURE_JWT_SECRET", raising=False)
    token = _token(capsys, "--roles", "sales", "billing,receiving", "--sub", "p-1")
    claims = jwt.decode(token, DEV_JWT_SECRET, algorithms=["HS256"])
    assert claims["roles"] == ["sales", "billing", "receiving"]
    assert claims["sub"] == "p-1"


def test_token_needs_roles(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["token"])
    assert "--roles" in capsys.readouterr().err


def test_parse_roles_keeps_order_and_drops_duplicates() -> None:
    assert parse_roles("purchasing.order,receiving,purchasing.order") == [
        "purchasing.order",
        "receiving",
    ]


def test_summarize_data_prefers_scalars() -> None:
    data = {
        "charge": {"id": "ch-1", "name": "x"},
        "quantity": 3,
        "lines": [1, 2],
        "note": "n" * 60,
        "posted": False,
        "price": 1.5,
        "extra": "not shown",
    }
    assert summarize_data(data) == f"quantity=3 note={'n' * 39}… posted=False price=1.5"
    assert summarize_data({"charge": {"id": "ch-1"}, "lines": [1]}) == "charge.id=ch-1 lines=[1]"
    assert summarize_data({}) == ""


# ------------------------------------------------------------------------------- up


@pytest.mark.filterwarnings("ignore::jwt.warnings.InsecureKeyLengthWarning")  # the dev secret
def test_up_summary_names_the_port_the_notifier_mails_an_external_server_on(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PROCURE_SMTP_HOST", "mail.example.com")
    monkeypatch.delenv("PROCURE_SMTP_PORT", raising=False)
    stack = Stack(StackPaths(tmp_path), services=[], sink=None, external_kafka="127.0.0.1:9092")
    stack.print_summary(already=False)
    port = SmtpSettings().port  # the notifier's default
    assert f"smtp        mail.example.com:{port}   (external)" in capsys.readouterr().out
    monkeypatch.setenv("PROCURE_SMTP_PORT", "2525")
    stack.print_summary(already=True)
    assert "smtp        mail.example.com:2525   (external)" in capsys.readouterr().out
    # The devstack does not depend on the notifier: deployed without it, up still answers.
    monkeypatch.setitem(sys.modules, "procure_notifier.sender", None)  # import fails
    stack.print_summary(already=True)
    assert "smtp        -   (the notifier is not installed: no mail is sent)" in (
        capsys.readouterr().out
    )
    # Installed but broken (a dependency of its own missing) is not "not installed".
    monkeypatch.delitem(sys.modules, "procure_notifier.sender")
    monkeypatch.setitem(sys.modules, "aiosmtplib", None)
    stack.print_summary(already=True)
    out = capsys.readouterr().out
    assert "not installed" not in out
    assert "smtp        -   (the notifier does not import: import of aiosmtplib halted" in out


# ----------------------------------------------------------------------------- tail


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    if shutil.which("java") is None:
        pytest.skip("needs a Java 17+ runtime")
    data_dir: Path = tmp_path_factory.mktemp("cli") / "kafka"
    port, controller = free_ports(2)
    kafka = LocalKafka(data_dir, port=port, controller_port=controller)
    kafka.start()
    try:
        kafka.wait_ready(timeout=90)
        yield kafka
    finally:
        kafka.kill()


@pytest.fixture
def kafka_env(broker: LocalKafka, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the CLI at the test broker under a fresh topic prefix; return the prefix."""
    prefix = f"t{uuid.uuid4().hex[:8]}."
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap)
    monkeypatch.setenv("PROCURE_TOPIC_PREFIX", prefix)
    for var in ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SASL_MECHANISM", "KAFKA_SSL_CAFILE"):
        monkeypatch.delenv(var, raising=False)
    return prefix


def _event(type_: str, subject: str, correlation: str, data: dict[str, object]) -> bytes:
    return CloudEvent(
        id=str(uuid.uuid4()),
        source="/tests/cli",
        type=type_,
        time=datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=UTC),
        subject=subject,
        correlationid=correlation,
        data=data,
    ).to_bytes()


GARBAGE = b"\x00\x01not json at all"


async def _produce(
    bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None]]
) -> None:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for key, value in records:
            # One partition, so the order of the output lines is the order sent.
            await producer.send_and_wait(topic, value, key=key, partition=0)
    finally:
        await producer.stop()


def _three_records() -> list[tuple[bytes | None, bytes]]:
    return [
        (
            b"ch-1",
            _event(
                "procurement.charge.created.v1",
                "ch-1",
                "so-1",
                {"charge_id": "ch-1", "product": {"id": "p-9"}, "quantity": 2, "posted": False},
            ),
        ),
        (
            b"po-1",
            _event(
                "procurement.po.submitted.v1",
                "po-1",
                "so-2",
                {"po_id": "po-1", "number": "PO-1001", "lines": [{"a": 1}, {"b": 2}]},
            ),
        ),
        (None, GARBAGE),
    ]


@pytest.mark.kafka
def test_tail_prints_events_and_undecodable_records(
    broker: LocalKafka, kafka_env: str, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [*_three_records(), (b"gone", None)]  # and a tombstone
    asyncio.run(_produce(broker.bootstrap, f"{kafka_env}charge.created", records))

    code = main(["tail", "charge.created", "--from-beginning", "--max", "4", "--timeout", "60"])

    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4, lines
    assert lines[0] == (
        "2024-05-01T12:00:00.123Z charge.created 0@0 key=ch-1 procurement.charge.created.v1 "
        "subject=ch-1 corr=so-1 charge_id=ch-1 quantity=2 posted=False product.id=p-9"
    )
    assert lines[1] == (
        "2024-05-01T12:00:00.123Z charge.created 0@1 key=po-1 procurement.po.submitted.v1 "
        "subject=po-1 corr=so-2 po_id=po-1 number=PO-1001 lines=[2]"
    )
    stamp, rest = lines[2].split(" ", 1)
    assert rest == f"charge.created 0@2 key=- <undecodable {len(GARBAGE)} bytes>"
    assert datetime.fromisoformat(stamp).tzinfo is not None
    assert lines[3].split(" ", 1)[1] == "charge.created 0@3 key=gone <tombstone: no value>"


@pytest.mark.kafka
async def test_tail_filters_and_stops_at_the_timeout(broker: LocalKafka, kafka_env: str) -> None:
    await _produce(broker.bootstrap, f"{kafka_env}mixed", _three_records())
    settings = load_settings("tail", database_url="none://")

    out = io.StringIO()
    started = asyncio.get_running_loop().time()
    count = await tail(
        ["mixed"], from_beginning=True, type_="po.submitted", timeout=3, settings=settings, out=out
    )
    assert asyncio.get_running_loop().time() - started < 20
    assert count == 1
    assert "key=po-1 procurement.po.submitted.v1" in out.getvalue()

    out = io.StringIO()
    count = await tail(
        ["mixed"], from_beginning=True, correlation="so-1", timeout=3, settings=settings, out=out
    )
    assert count == 1
    assert "key=ch-1" in out.getvalue()


@pytest.mark.kafka
async def test_tail_follows_and_picks_up_a_topic_created_later(
    broker: LocalKafka, kafka_env: str
) -> None:
    await _produce(broker.bootstrap, f"{kafka_env}old", [(b"k0", _three_records()[0][1])])
    settings = load_settings("tail", database_url="none://")
    out, err = io.StringIO(), io.StringIO()
    task = asyncio.create_task(
        tail(["old", "new"], max_records=2, timeout=60, settings=settings, out=out, err=err)
    )
    await asyncio.sleep(4)  # tail is assigned and waits at the end of `old`
    assert out.getvalue() == ""  # follows: the record sent before it started is not shown
    assert "waiting for topic(s) to appear: " in err.getvalue()
    await _produce(broker.bootstrap, f"{kafka_env}new", [(b"k-new", _three_records()[1][1])])
    await _produce(broker.bootstrap, f"{kafka_env}old", [(b"k-old", _three_records()[0][1])])
    assert await asyncio.wait_for(task, 60) == 2
    lines = out.getvalue().splitlines()
    assert sorted(line.split()[3] for line in lines) == ["key=k-new", "key=k-old"]
    assert {line.split()[1] for line in lines} == {"old", "new"}


def _ended(tmp_path: Path, name: str, code: str) -> ManagedProcess:
    """A managed process that has run `code` to its end."""
    proc = ManagedProcess(
        name=name,
        module="-c",
        args=[],
        pid_file=tmp_path / f"{name}.pid",
        log_file=tmp_path / f"{name}.log",
    )
    proc.proc = subprocess.Popen([sys.executable, "-c", code])
    proc.proc.wait(timeout=30)
    return proc


def test_a_foreground_up_whose_services_failed_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`procure up` in the foreground returns when nothing is left running: with 0 when
    it was stopped (`procure down` sends SIGTERM), with 1 when a process failed, which
    "everything has stopped" and 0 hid."""
    term = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    stopped = [_ended(tmp_path, "quotes", "pass"), _ended(tmp_path, "inventory", term)]
    stack = Stack(StackPaths(tmp_path), stopped, None, external_kafka="elsewhere:9092")
    assert stack.watch(interval=0.01) == 0
    assert capsys.readouterr().err.strip().endswith("everything has stopped")

    crashed = _ended(tmp_path, "purchasing", "raise SystemExit(3)")
    stack = Stack(StackPaths(tmp_path), [*stopped, crashed], None, external_kafka="elsewhere:9092")
    assert stack.watch(interval=0.01) == 1
    assert "everything has stopped; failed: purchasing" in capsys.readouterr().err
