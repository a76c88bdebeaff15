"""The mail a notification row becomes, as it goes out and as a receiving system parses
it; and the sender delivering it to a real SMTP server."""

from email import message_from_bytes, policy
from types import SimpleNamespace

import pytest
from aiosmtplib.email import flatten_message

from procure_notifier.sender import Sender, SmtpSettings, flatten, message_of

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
    raw = flatten(message_of(row, SMTP))  # the bytes the sender hands to `sendmail`
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


SUBJECTS = [
    "Ready: sales order so-1",
    "x" * 69,  # "Subject: " and 69 characters: the longest line written as it is
    "x" * 70,  # one more: folded by the email package
    "Forwarded to purchasing: sales orders " + ", ".join(f"so-{i:06d}" for i in range(12)),
    "two  spaces, a trailing one ",
    " a leading space",
    "a\ttab",
    "Lieferung für Müller — 3 Artikel",
]


@pytest.mark.parametrize("subject", SUBJECTS)
def test_the_mail_sent_is_byte_for_byte_what_the_email_package_makes(subject: str) -> None:
    """The sender writes a short ASCII header as it is instead of passing it through
    compat32's folding, and flattens the mail itself: the bytes must be those aiosmtplib's
    `send_message` made from the same message (a long header folded the same way)."""
    msg = message_of(_row(subject=subject, body_text="=" * 100 + "\n\tend \n"), SMTP)
    assert flatten(msg) == flatten_message(msg)


def test_no_body_can_hold_the_boundary() -> None:
    """The boundary is chosen without looking at the parts: they are quoted-printable, in
    which "==" never appears, so even a body holding the boundary itself parses back."""
    row = _row()
    boundary = message_of(row, SMTP).get_boundary()
    assert boundary is not None and "==" in boundary
    tricky = f"--{boundary}\n--{boundary}--\n== = ==\n"
    row = _row(body_text=tricky, body_html=f"<pre>{tricky}</pre>")
    raw, mail = _parsed(row)
    assert raw.count(f"--{boundary}".encode()) == 3  # two parts and the end: nothing else
    assert mail.get_body(("plain",)).get_content() == row.body_text
    assert mail.get_body(("html",)).get_content() == row.body_html


async def test_the_sender_delivers_plain_and_international_addresses(sink, quick_smtp) -> None:
    """An ASCII address gets the flattened mail with `sendmail`; an address outside ASCII
    goes through `send_message`, which asks the server for SMTPUTF8."""
    sender = Sender(None, quick_smtp(sink.port))  # type: ignore[arg-type]  # no database used
    try:
        plain, international = _row(), _row(recipient="jürgen@example.com", event_id="e-2")
        await sender.deliver(plain)
        await sender.deliver(international)
        first, second = sink.wait_for(2)
    finally:
        await sender.stop()
    assert (first.mail_from, first.rcpt_tos) == ("procure@example.com", ["olive@example.com"])
    assert first.message["Subject"] == plain.subject
    crlf = plain.body_text.replace("\n", "\r\n")  # as sent: SMTP lines end in CRLF
    assert first.message.get_body(("plain",)).get_content() == crlf
    assert second.rcpt_tos == ["jürgen@example.com"]
    assert second.message["To"] == "jürgen@example.com"
    assert second.message.get_body(("plain",)).get_content() == crlf


@pytest.mark.parametrize(
    ("subject", "recipient"),
    [
        ("Delivered/Shipped: charge CH-7\nX-Ref: 1", "olive@example.com"),
        ("Ready: sales order SO-1\r\nBcc: eve@example.com", "olive@example.com"),
        ("Ready: sales order SO-1\nB", "olive@example.com"),  # no colon: ends the headers
        ("Ready: sales order SO-1\u2028x\x85y\x00z", "olive@example.com"),
        ("Lieferung für SO-1\nX-Ref: 1", "olive@example.com"),
        ("Ready: sales order SO-1\nX-Ref: 1", "jürgen@example.com"),  # SMTPUTF8 path
    ],
)
def test_ids_with_line_breaks_make_a_one_line_subject(subject: str, recipient: str) -> None:
    """Ids are any text, from other systems too, and subjects name them: a line break
    must neither stop the mail (the email package refuses it, and the row was retried
    for good) nor start a header or end the header block."""
    row = _row(subject=subject, recipient=recipient, event_id="e-1\nX-Evil: 1")
    msg = message_of(row, SMTP)
    raw = flatten(msg) if recipient.isascii() else flatten_message(msg)
    mail = message_from_bytes(raw, policy=policy.default)
    expected = "".join(c if c.isprintable() else " " for c in subject)
    assert mail["Subject"] == expected
    assert mail["X-Procure-Event-Id"] == "e-1 X-Evil: 1"
    assert mail["X-Ref"] is None and mail["Bcc"] is None and mail["X-Evil"] is None
    assert mail["Message-ID"] and mail["X-Procure-Notification"] == "received"
    body = mail.get_body(("plain",)).get_content().replace("\r\n", "\n")  # SMTPUTF8: CRLF
    assert body == row.body_text


def test_a_from_setting_with_a_name_makes_a_valid_from_header() -> None:
    smtp = SmtpSettings(sender="Procurement Team <procurement@acme.example>")  # type: ignore[call-arg]
    assert smtp.envelope_sender == "procurement@acme.example"
    for row in (_row(), _row(recipient="jürgen@example.com")):
        msg = message_of(row, smtp)
        raw = flatten(msg) if row.recipient.isascii() else flatten_message(msg)
        mail = message_from_bytes(raw, policy=policy.default)
        assert mail["From"] == "Procurement Team <procurement@acme.example>"
        assert mail["From"].addresses[0].addr_spec == "procurement@acme.example"


async def test_the_envelope_sender_is_the_from_settings_address(sink, quick_smtp) -> None:
    smtp = quick_smtp(sink.port)
    smtp = smtp.model_copy(update={"sender": "Procurement Team <procurement@acme.example>"})
    sender = Sender(None, smtp)  # type: ignore[arg-type]  # no database used
    try:
        await sender.deliver(_row())
        [got] = sink.wait_for(1)
    finally:
        await sender.stop()
    assert got.mail_from == "procurement@acme.example"
    assert got.message["From"] == "Procurement Team <procurement@acme.example>"
