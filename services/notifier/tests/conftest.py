"""Fixtures for the notifier's tests: a real SMTP server (the devstack's aiosmtpd sink),
a self-signed certificate for the TLS tests, and SMTP settings with quick retries."""

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from procure_devstack.smtp import SmtpSink
from procure_devstack.tls import CertificateAuthority
from procure_notifier.sender import SmtpSettings


@pytest.fixture
def sink() -> Iterator[SmtpSink]:
    server = SmtpSink()
    server.start()
    yield server
    server.stop()


def _quick_smtp(port: int, **overrides: object) -> SmtpSettings:
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": port,
        "sender": "procure@example.com",
        "tls": "none",
        "timeout_s": 5.0,
        "retry_backoff_s": 0.2,
        "retry_max_s": 1.0,
        "poll_s": 0.1,
    }
    values.update(overrides)
    return SmtpSettings(**values)  # type: ignore[arg-type]


@pytest.fixture
def quick_smtp() -> Callable[..., SmtpSettings]:
    """Factory: SMTP settings for a server on 127.0.0.1:`port`, retrying within a second."""
    return _quick_smtp


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A certificate for localhost / 127.0.0.1 from a test CA; the cert file carries the
    chain, so it also serves clients as the CA file to trust."""
    files = CertificateAuthority().write_server_files(
        tmp_path_factory.mktemp("tls"), "127.0.0.1", "localhost"
    )
    return files.cert_file, files.key_file


@pytest.fixture
def server_tls(certificate: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(certificate[0]), str(certificate[1]))
    return context
