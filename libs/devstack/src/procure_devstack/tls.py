"""A throwaway certificate authority for tests: a CA and server certificates for loopback,
written as PEM files that Python (``ssl``, aiokafka, aiosmtplib) and Kafka both read.

Usage::

    ca = CertificateAuthority()
    files = ca.write_server_files(tmp_path, "127.0.0.1", "localhost")
    files.ca_file        # trust this (KAFKA_SSL_CAFILE, PROCURE_SMTP_CAFILE)
    files.keystore_file  # Kafka ``ssl.keystore.type=PEM`` + ``ssl.keystore.location``
    files.cert_file, files.key_file  # ``SSLContext.load_cert_chain``

Keys are EC P-256 (fast to generate) and unencrypted PKCS#8, the one private key form
Kafka's PEM key store reads without a password.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "ServerFiles"]


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


@dataclass(frozen=True)
class ServerFiles:
    ca_file: Path
    cert_file: Path
    key_file: Path
    keystore_file: Path  # private key, then the certificate chain (server, CA)


class CertificateAuthority:
    """A self-signed CA valid for a day, able to issue server certificates."""

    def __init__(self, name: str = "procure test CA", days: int = 1) -> None:
        self.days = days
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = dt.datetime.now(dt.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(self.name)
            .issuer_name(self.name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return _cert_pem(self.cert)

    def issue_server(self, *hosts: str) -> tuple[bytes, bytes]:
        """(certificate PEM, PKCS#8 key PEM) for a server known by `hosts` (names or IPs)."""
        hosts = hosts or ("127.0.0.1", "localhost")
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self.name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=self.days))
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return _cert_pem(cert), _key_pem(key)

    def write_server_files(self, directory: Path, *hosts: str) -> ServerFiles:
        """Write ``ca.pem``, ``server.pem``, ``server.key`` and ``server-keystore.pem``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        cert_pem, key_pem = self.issue_server(*hosts)
        files = ServerFiles(
            ca_file=directory / "ca.pem",
            cert_file=directory / "server.pem",
            key_file=directory / "server.key",
            keystore_file=directory / "server-keystore.pem",
        )
        files.ca_file.write_bytes(self.cert_pem)
        files.cert_file.write_bytes(cert_pem + self.cert_pem)
        files.key_file.write_bytes(key_pem)
        files.key_file.chmod(0o600)
        files.keystore_file.write_bytes(key_pem + cert_pem + self.cert_pem)
        files.keystore_file.chmod(0o600)
        return files
