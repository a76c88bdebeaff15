"""An SMTP sink for development and tests: accepts every message and keeps it.

Built on aiosmtpd, whose ``Controller`` runs the server's event loop in its own
thread, so the sink works from synchronous and asynchronous tests alike.

Library use::

    sink = SmtpSink()              # port 0: a free port, see sink.port
    sink.start()
    ...                            # point PROCURE_SMTP_HOST/PORT at the sink
    [msg] = sink.wait_for(1)
    msg.message["Subject"], msg.rcpt_tos
    sink.stop(); sink.start()      # an outage: same port, messages kept
    sink.fail_next(2)              # the next two messages get a 451
    sink.stop()

TLS: ``tls_context`` (a server ``ssl.SSLContext``) enables STARTTLS, and
``require_starttls`` refuses mail before it; ``implicit_tls`` wraps the whole
connection instead (SMTPS). ``credentials`` makes AUTH PLAIN/LOGIN mandatory.

Command line (foreground until SIGTERM or Ctrl-C; one line per message)::

    python -m procure_devstack.smtp [--host 127.0.0.1] [--port 1025] [--maildir var/mail]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.policy
import itertools
import os
import signal
import socket
import ssl
import sys
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.parser import BytesParser
from functools import cached_property
from pathlib import Path
from typing import Any, cast

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from procure_runtime.settings import ServiceSettings, loop_factory

__all__ = ["DEFAULT_PORT", "ReceivedMessage", "SmtpSink", "main", "wait_listening"]

DEFAULT_PORT = 1025


@dataclass(frozen=True)
class ReceivedMessage:
    """One accepted message."""

    mail_from: str
    rcpt_tos: list[str]
    received_at: datetime
    raw: bytes
    peer: str
    tls: bool
    auth_login: str | None
    path: Path | None

    @cached_property
    def message(self) -> EmailMessage:
        """The message as a receiver parses it; parsed on first use, since a benchmark's
        thousands of mails are mostly only counted."""
        parsed = BytesParser(policy=email.policy.default).parsebytes(self.raw)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def body(self) -> str:
        """The text/plain part (or the first text part), decoded."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        return str(part.get_content()) if part is not None else ""


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return self._sink._accept(session, envelope)


class _Authenticator:
    def __init__(self, credentials: Mapping[str, str]) -> None:
        self._credentials = dict(credentials)

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode(errors="replace")
            if self._credentials.get(login) == auth_data.password.decode(errors="replace"):
                return AuthResult(success=True, auth_data=login)
        return AuthResult(success=False, handled=False)


class _Controller(Controller):
    """A Controller that can bind port 0 and then knows the port it got."""

    def _create_server(self) -> Coroutine[Any, Any, asyncio.AbstractServer]:
        create = super()._create_server()

        async def bind() -> asyncio.AbstractServer:
            server = await create  # asyncio's Server or uvloop's: both have `sockets`
            self.port = int(cast(asyncio.Server, server).sockets[0].getsockname()[1])
            return server

        return bind()


class SmtpSink:
    """An SMTP server on ``host:port`` that records every message it accepts.

    ``port=0`` picks a free port on the first ``start()``; later starts reuse it.
    With ``maildir`` each message is also written to ``<maildir>/<name>.eml``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        maildir: Path | None = None,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls: bool = False,
        credentials: Mapping[str, str] | None = None,
        on_message: Callable[[ReceivedMessage], None] | None = None,
    ) -> None:
        if (require_starttls or implicit_tls) and tls_context is None:
            raise ValueError("require_starttls and implicit_tls need a tls_context")
        if require_starttls and implicit_tls:
            raise ValueError("choose one of require_starttls and implicit_tls")
        self.host = host
        self.port = port
        self.maildir = Path(maildir) if maildir is not None else None
        self.tls_context = tls_context
        self.require_starttls = require_starttls
        self.implicit_tls = implicit_tls
        self.credentials = dict(credentials) if credentials is not None else None
        self.on_message = on_message
        self._controller: _Controller | None = None
        self._messages: list[ReceivedMessage] = []
        self._changed = threading.Condition()
        self._fail_next: list[str] = []
        self._seq = itertools.count(1)

    def __repr__(self) -> str:
        state = "running" if self.is_running() else "stopped"
        return f"SmtpSink({self.host}:{self.port}, {state}, {len(self._messages)} messages)"

    # -- lifecycle

    def is_running(self) -> bool:
        return self._controller is not None

    def start(self) -> None:
        """Listen (in a background thread) until ``stop()``; no-op if running."""
        if self._controller is not None:
            return
        smtp_kwargs: dict[str, Any] = {
            "server_hostname": "procure-smtp-sink",
            "ident": "procure SMTP sink",
            "data_size_limit": 32 * 1024 * 1024,
            "enable_SMTPUTF8": True,  # addresses outside ASCII, as a real server takes them
        }
        if self.tls_context is not None and not self.implicit_tls:
            smtp_kwargs["tls_context"] = self.tls_context
            smtp_kwargs["require_starttls"] = self.require_starttls
        if self.credentials is not None:
            smtp_kwargs["authenticator"] = _Authenticator(self.credentials)
            smtp_kwargs["auth_required"] = True
            # aiosmtpd only counts STARTTLS as TLS; with implicit TLS or no TLS at
            # all, AUTH must be allowed on what it thinks is a clear connection.
            smtp_kwargs["auth_require_tls"] = self.tls_context is not None and not self.implicit_tls
        if self.maildir is not None:
            self.maildir.mkdir(parents=True, exist_ok=True)
        # A Controller closes its event loop on stop(), so every start needs a new one.
        # The services' loop (uvloop where installed): under a benchmark's ~300 mails/s the
        # sink shares the machine with the stack it measures.
        controller = _Controller(
            _Handler(self),
            loop=loop_factory(ServiceSettings.model_validate({}).event_loop)(),
            hostname=self.host,
            port=self.port,
            ssl_context=self.tls_context if self.implicit_tls else None,
            **smtp_kwargs,
        )
        controller.start()
        self.port = controller.port
        self._controller = controller

    def stop(self) -> None:
        """Close the listener and every open session; recorded messages are kept."""
        controller, self._controller = self._controller, None
        if controller is not None:
            controller.stop()

    def __enter__(self) -> SmtpSink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- messages

    @property
    def messages(self) -> list[ReceivedMessage]:
        """A snapshot of the accepted messages, oldest first."""
        with self._changed:
            return list(self._messages)

    def clear(self) -> None:
        with self._changed:
            self._messages.clear()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages were accepted; return them all.

        Raises ``TimeoutError`` (saying how many arrived) after ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} message(s) within {timeout}s, got {len(self._messages)}"
                )
            return list(self._messages)

    def fail_next(
        self, count: int = 1, reply: str = "451 4.3.0 Simulated temporary failure"
    ) -> None:
        """Answer the next ``count`` DATA commands with ``reply`` instead of accepting."""
        with self._changed:
            self._fail_next.extend([reply] * count)

    # -- called on the server thread

    def _accept(self, session: Session, envelope: Envelope) -> str:
        with self._changed:
            if self._fail_next:
                return self._fail_next.pop(0)
        raw = envelope.original_content or b""
        if isinstance(envelope.content, bytes) and not raw:
            raw = envelope.content
        received_at = datetime.now(UTC)
        path = self._write_eml(raw, received_at) if self.maildir is not None else None
        peer = session.peer
        record = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=list(envelope.rcpt_tos),
            received_at=received_at,
            raw=raw,
            peer=f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer),
            tls=self.implicit_tls or session.ssl is not None,
            auth_login=session.auth_data if isinstance(session.auth_data, str) else None,
            path=path,
        )
        with self._changed:
            self._messages.append(record)
            self._changed.notify_all()
        if self.on_message is not None:
            self.on_message(record)
        return "250 2.0.0 OK: queued"

    def _write_eml(self, raw: bytes, received_at: datetime) -> Path:
        assert self.maildir is not None
        self.maildir.mkdir(parents=True, exist_ok=True)
        stamp = received_at.strftime("%Y%m%dT%H%M%S%fZ")
        name = f"{stamp}-{next(self._seq):05d}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.maildir / f".{name}.tmp"
        tmp.write_bytes(raw)
        # Readers watching the directory never see a half-written file.
        final = self.maildir / name
        os.replace(tmp, final)
        return final


def wait_listening(host: str, port: int, timeout: float = 10.0) -> bool:
    """True once ``host:port`` answers with an SMTP greeting (for launchers)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            with socket.create_connection((host, port), timeout=1.0) as sock:
                sock.settimeout(2.0)
                if sock.recv(3) == b"220":
                    return True
        time.sleep(0.1)
    return False


# ---------------------------------------------------------------------------- CLI


def _log_line(msg: ReceivedMessage) -> None:
    where = f" -> {msg.path}" if msg.path is not None else ""
    print(
        f"{msg.received_at:%Y-%m-%dT%H:%M:%S}Z from={msg.mail_from} "
        f"to={','.join(msg.rcpt_tos)} subject={msg.subject!r}{where}",
        flush=True,
    )


def _server_tls_context(cert: Path, key: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key) if key is not None else None)
    return context


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m procure_devstack.smtp",
        description="Run an SMTP sink in the foreground until SIGTERM or Ctrl-C.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument(
        "--maildir", type=Path, default=None, help="also write each message here as .eml"
    )
    parser.add_argument(
        "--tls-cert", type=Path, default=None, help="PEM certificate (enables STARTTLS)"
    )
    parser.add_argument("--tls-key", type=Path, default=None, help="PEM key, if not in --tls-cert")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--require-starttls", action="store_true")
    mode.add_argument("--implicit-tls", action="store_true", help="TLS from the first byte (SMTPS)")
    args = parser.parse_args(argv)

    tls = _server_tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
    if (args.require_starttls or args.implicit_tls) and tls is None:
        parser.error("--require-starttls and --implicit-tls need --tls-cert")

    sink = SmtpSink(
        args.host,
        args.port,
        maildir=args.maildir,
        tls_context=tls,
        require_starttls=args.require_starttls,
        implicit_tls=args.implicit_tls,
        on_message=_log_line,
    )
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        sink.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    maildir = f", maildir {args.maildir}" if args.maildir else ""
    print(f"SMTP sink listening on {sink.host}:{sink.port}{maildir}", flush=True)
    try:
        while not stopping.wait(0.5):
            pass
    finally:
        sink.stop()
    print("SMTP sink stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
