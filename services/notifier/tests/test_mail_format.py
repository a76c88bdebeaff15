"""The mail a notification row becomes, as a receiving system parses it."""

from email import message_from_bytes, policy
from types import SimpleNamespace

from procure_notifier.sender import SmtpSettings, message_of

SMTP = SmtpSettings(sender="procure@example.com")  # type: ignore[call-arg]


def _row(**overrides: str) -> SimpleNamespace:
    values = {
        "recipient": "olive@example.com",
        "subject": "Items received for Ticket T-7 (Fix the printer)",
        "event_id": "e-1",
        "type": "received",
        "body_text": "Olive,\n\nThe Laser printer (2) arrived for Jürgen — see T-7.\n",
        "body_html": "<p>Olive,</p><p>The Laser printer (2) arrived for Jürgen — see T-7.</p>",
    }
    return SimpleNamespace(**{**values, **overrides})


def _parsed(row: SimpleNamespace) -> tuple[bytes, object]:
    raw = message_of(row, SMTP).as_bytes()
    return raw, message_from_bytes(raw, policy=policy.default)


def test_a_mail_has_the_headers_and_both_alternatives() -> None:
    row = _row()
    raw, mail = _parsed(row)
    assert mail["From"] == "Procurement <procure@example.com>"
    assert mail["To"] == "olive@example.com"
    assert f"Subject: {row.subject}".encode() in raw  # an ASCII subject stays as it is
    assert mail["X-Procure-Notification"] == "received"
    assert mail["X-Procure-Event-Id"] == "e-1"
    assert mail.get_content_type() == "multipart/alternative"
    assert mail.get_body(("plain",)).get_content() == row.body_text
    assert mail.get_body(("html",)).get_content() == row.body_html
    assert b"The Laser printer" in raw  # quoted-printable: readable in a mail file


def test_a_subject_outside_ascii_arrives_unchanged() -> None:
    row = _row(subject="Lieferung für Müller — 3 Artikel")
    raw, mail = _parsed(row)
    assert mail["Subject"] == row.subject
    assert "Müller".encode() not in raw  # encoded for transport


def test_the_message_id_is_the_same_on_every_attempt_and_differs_per_recipient() -> None:
    first = _parsed(_row())[1]["Message-ID"]
    again = _parsed(_row())[1]["Message-ID"]
    other = _parsed(_row(recipient="sam@example.com"))[1]["Message-ID"]
    assert first == again != other


def test_an_address_outside_ascii_gets_an_internationalized_message() -> None:
    row = _row(recipient="jürgen@example.com")
    msg = message_of(row, SMTP)
    assert msg.policy is not policy.compat32  # SMTPUTF8 needs the modern API
    assert msg["To"] == "jürgen@example.com"
    assert msg.get_body(("plain",)).get_content() == row.body_text
