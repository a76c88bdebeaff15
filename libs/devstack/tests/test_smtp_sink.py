"""The SMTP sink: plain, STARTTLS and SMTPS delivery, AUTH, the maildir, outages."""

from __future__ import annotations

import smtplib
import ssl
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
import uvloop

from procure_devstack.smtp import SmtpSink, wait_listening
from procure_devstack.tls import CertificateAuthority


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for localhost / 127.0.0.1 from a test CA; the cert file carries the
    chain, so it also serves clients as the CA file to trust."""
    files = CertificateAuthority().write_server_files(
        tmp_path_factory.mktemp("tls"), "127.0.0.1", "localhost"
    )
    return files.cert_file, files.key_file


@pytest.fixture
def server_tls(cert_files: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*map(str, cert_files))
    return context


@pytest.fixture
def client_tls(cert_files: tuple[Path, Path]) -> ssl.SSLContext:
    # Verifies the chain and the host name (127.0.0.1 is in the SAN): real checks.
    return ssl.create_default_context(cafile=str(cert_files[0]))


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SmtpSink]:
    smtp_sink = SmtpSink(maildir=tmp_path / "mail")
    smtp_sink.start()
    yield smtp_sink
    smtp_sink.stop()


def _message(subject: str, to: str = "alice@example.com") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "procure@example.com"
    msg["To"] = to
    msg["Subject"] = subject
    msg.set_content(f"Body of {subject}: Größe ✓ café\n")
    return msg


def test_plain_delivery_is_recorded_and_written_to_maildir(sink: SmtpSink, tmp_path: Path) -> None:
    assert sink.port > 0
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
        client.send_message(
            _message("PO-1001 On Order"), to_addrs=["alice@example.com", "bob@example.com"]
        )
        client.send_message(_message("SO-7 Ready to fulfill", to="carol@example.com"))

    first, second = sink.wait_for(2, timeout=5)
    assert first.mail_from == "procure@example.com"
    assert first.rcpt_tos == ["alice@example.com", "bob@example.com"]
    assert first.message["Subject"] == "PO-1001 On Order"
    assert first.subject == "PO-1001 On Order"
    assert "Größe ✓ café" in first.body()
    assert not first.tls
    assert first.received_at.tzinfo is not None
    assert second.rcpt_tos == ["carol@example.com"]

    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert [p.name for p in files] == sorted(m.path.name for m in (first, second) if m.path)
    assert b"Subject: PO-1001 On Order" in files[0].read_bytes()
    assert not list((tmp_path / "mail").glob(".*.tmp"))

    sink.clear()
    assert sink.messages == []
    with pytest.raises(TimeoutError, match="got 0"):
        sink.wait_for(1, timeout=0.2)


def test_the_sink_serves_on_uvloop(sink: SmtpSink) -> None:
    """Its loop costs less CPU, which a benchmark's ~300 mails/s share with the stack."""
    assert sink._controller is not None
    assert isinstance(sink._controller.loop, uvloop.Loop)


def test_starttls_required(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    with SmtpSink(tls_context=server_tls, require_starttls=True) as sink:
        with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            with pytest.raises(smtplib.SMTPSenderRefused) as refused:
                client.send_message(_message("in clear text"))
            assert refused.value.smtp_code == 530

        with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
            client.starttls(context=client_tls)
            client.send_message(_message("over STARTTLS"))

        [msg] = sink.wait_for(1, timeout=5)
        assert msg.tls
        assert msg.subject == "over STARTTLS"


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_implicit_tls_and_auth(server_tls: ssl.SSLContext, client_tls: ssl.SSLContext) -> None:
    sink = SmtpSink(tls_context=server_tls, implicit_tls=True, credentials={"notifier": "s3cret"})
    with sink:
        with smtplib.SMTP_SSL(sink.host, sink.port, context=client_tls, timeout=10) as client:
            with pytest.raises(smtplib.SMTPAuthenticationError):
                client.login("notifier", "wrong")
        with smtplib.SMTP_SSL(sink.host, sink.port, context=client_tls, timeout=10) as client:
            client.login("notifier", "s3cret")
            client.send_message(_message("over SMTPS"))
        [msg] = sink.wait_for(1, timeout=5)
        assert msg.tls
        assert msg.auth_login == "notifier"


def test_outage_stop_then_start_on_the_same_port(sink: SmtpSink) -> None:
    port = sink.port
    with smtplib.SMTP(sink.host, port, timeout=10) as client:
        client.send_message(_message("before"))
    sink.wait_for(1)

    sink.stop()
    assert not sink.is_running()
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP(sink.host, port, timeout=5)

    sink.start()
    assert sink.port == port
    with smtplib.SMTP(sink.host, port, timeout=10) as client:
        client.send_message(_message("after"))
    assert [m.subject for m in sink.wait_for(2)] == ["before", "after"]


def test_fail_next_answers_a_temporary_error(sink: SmtpSink) -> None:
    sink.fail_next(1)
    with smtplib.SMTP(sink.host, sink.port, timeout=10) as client:
        with pytest.raises(smtplib.SMTPDataError) as failed:
            client.send_message(_message("first try"))
        assert failed.value.smtp_code == 451
        client.send_message(_message("second try"))
    assert [m.subject for m in sink.wait_for(1)] == ["second try"]


def test_command_line_runs_until_sigterm(tmp_path: Path) -> None:
    port = SmtpSink()
    port.start()  # borrow a free port, then hand it to the subprocess
    free = port.port
    port.stop()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "procure_devstack.smtp",
            "--port",
            str(free),
            "--maildir",
            str(tmp_path / "mail"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_listening("127.0.0.1", free, timeout=20), "sink did not start"
        with smtplib.SMTP("127.0.0.1", free, timeout=10) as client:
            client.send_message(_message("from the CLI test"))
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, out
    assert "subject='from the CLI test'" in out
    assert len(list((tmp_path / "mail").glob("*.eml"))) == 1
