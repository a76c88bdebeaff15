"""The notifier's pure rules: stakeholders, one mail per address, subjects, backoff."""

import os

import pytest
from aiosmtplib.email import parse_address

from procure_notifier.domain import (
    MAX_ADDRESS,
    ChargeInfo,
    Item,
    Mail,
    Notice,
    NotificationType,
    Person,
    item_of,
    mails_for,
    stakeholders,
    subject,
    team_mails,
    unmailable,
)
from procure_notifier.notifications import render
from procure_notifier.sender import SmtpSettings

CARL = Person("p-carl", "Carl Charger", "carl@example.com")
RITA = Person("p-rita", "Rita Resource", "rita@example.com")
LEO = Person("p-leo", "Leo Lead", "leo@example.com")
OLIVE = Person("p-olive", "Olive Opportunity", "olive@example.com")
SAM = Person("p-sam", "Sam Sales", "sam@example.com")


def _charge(id_: str, kind: str, **kw: object) -> ChargeInfo:
    return ChargeInfo(
        id=id_,
        owner=kw.pop("owner", CARL),  # type: ignore[arg-type]
        parent_kind=kind,
        parent_id=f"{kind}-1",
        parent_name=f"A {kind}",
        product="Widget (W-1)",
        quantity=3,
        **kw,  # type: ignore[arg-type]
    )


def test_ticket_charge_notifies_owner_primary_resource_and_order_people() -> None:
    charge = _charge(
        "ch-1",
        "ticket",
        primary_resource=RITA,
        project_lead=LEO,  # not a project: ignored
        opportunity_owner=OLIVE,
        sales_order_owner=SAM,
        sales_order_id="so-1",
    )
    assert stakeholders(charge) == [CARL, RITA, OLIVE, SAM]


def test_project_charge_notifies_the_project_lead_not_a_primary_resource() -> None:
    charge = _charge("ch-2", "project", primary_resource=RITA, project_lead=LEO)
    assert stakeholders(charge) == [CARL, LEO]


def test_one_person_in_several_roles_gets_one_mail_listing_all_their_items() -> None:
    ticket = _charge("ch-1", "ticket", primary_resource=RITA, opportunity_owner=OLIVE)
    # Leo owns and leads the project charge; Olive is the opportunity owner and SO owner.
    project = _charge(
        "ch-2",
        "project",
        owner=LEO,
        project_lead=LEO,
        opportunity_owner=OLIVE,
        sales_order_owner=Person("p-olive", "Olive O.", "OLIVE@example.com "),
    )
    lines = [item_of(ticket, 2, "PO-000001"), item_of(project, 1, "PO-000001")]
    mails = mails_for(zip(lines, [stakeholders(ticket), stakeholders(project)], strict=True))
    by_address = {m.recipient: [i.charge_id for i in m.items] for m in mails}
    assert by_address == {
        "carl@example.com": ["ch-1"],
        "rita@example.com": ["ch-1"],
        "olive@example.com": ["ch-1", "ch-2"],
        "leo@example.com": ["ch-2"],
    }


def test_two_identical_lines_of_one_charge_both_stay_listed() -> None:
    charge = _charge("ch-1", "contract")
    line = item_of(charge, 1, "PO-000002")
    [mail] = mails_for([(line, [CARL]), (line, [CARL])])
    assert len(mail.items) == 2


def test_purchasing_team_addresses_are_deduplicated() -> None:
    item = Item("Widget (W-1)", 2, "ch-1")
    mails = team_mails(["buy@example.com", "Buy@Example.com", "", "boss@example.com"], [item])
    assert [(m.recipient, m.items) for m in mails] == [
        ("buy@example.com", [item]),
        ("boss@example.com", [item]),
    ]
    assert team_mails([], [item]) == []


MAILABLE = [
    "carl@example.com",
    "first.last+tag@sub.example.co.uk",
    "o'brien@example.com",
    "jörg@bücher.example",  # SMTPUTF8
    "x" * 64 + "@" + "d" * (MAX_ADDRESS - 65),
]


@pytest.mark.parametrize("address", MAILABLE)
def test_plain_mailboxes_are_mailable_and_sent_to_as_they_are(address: str) -> None:
    assert unmailable(address) is None
    assert parse_address(address) == address  # what aiosmtplib puts on RCPT TO


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("", "empty"),
        ("x" * 64 + "@" + "d" * (MAX_ADDRESS - 64), "too long"),
        ("x" * 5000 + "@example.com", "too long"),
        ("carl", "not a mailbox"),
        ("@example.com", "not a mailbox"),
        ("carl@", "not a mailbox"),
        ("carl@b@example.com", "not a mailbox"),
        ("carl smith@example.com", "not a mailbox"),  # aiosmtplib: ValueError
        ("carl\r\nrcpt to:<eve@example.com>@example.com", "not a mailbox"),
        ("carl\x00@example.com", "not a mailbox"),
        ("carl\x85@example.com", "not a mailbox"),
        ("carl <carl@example.com>", "not a mailbox"),
        ("eve<carl@example.com", "not a mailbox"),  # aiosmtplib mails carl@example.com
        ("carl,eve@example.com", "not a mailbox"),  # aiosmtplib mails "carl"
        ("carl;eve@example.com", "not a mailbox"),
        ('"carl"@example.com', "not a mailbox"),
        ("carl(x)@example.com", "not a mailbox"),
        ("carl@[192.0.2.1]", "not a mailbox"),
    ],
)
def test_unmailable_addresses_say_why(address: str, why: str) -> None:
    assert unmailable(address) == why


def test_subject_names_the_status_and_the_po_or_the_sales_orders() -> None:
    mail = Mail("x@example.com", "X", [Item("W", 1, "ch-1", sales_order_id="so-9")])
    on_order = Notice(NotificationType.ON_ORDER, "On Order", po_number="PO-000042")
    assert subject(on_order, mail) == "On Order: PO-000042"
    delivered = Notice(NotificationType.DELIVERED, "Delivered/Shipped")
    assert subject(delivered, mail) == "Delivered/Shipped: sales order so-9"
    direct = Mail("x@example.com", "X", [Item("W", 1, "ch-7")])
    assert subject(delivered, direct) == "Delivered/Shipped: charge ch-7"


def test_retry_backoff_doubles_up_to_the_cap() -> None:
    smtp = SmtpSettings(retry_backoff_s=2.0, retry_max_s=10.0)
    assert [smtp.backoff(n).total_seconds() for n in (1, 2, 3, 4, 10)] == [2, 4, 8, 10, 10]


def test_smtp_settings_come_from_the_spec_variables(monkeypatch) -> None:
    monkeypatch.setenv("PROCURE_SMTP_HOST", "mail.example.com")
    monkeypatch.setenv("PROCURE_SMTP_PORT", "587")
    monkeypatch.setenv("PROCURE_SMTP_FROM", "procure@example.com")
    monkeypatch.setenv("PROCURE_SMTP_TLS", "starttls")
    monkeypatch.setenv("PROCURE_SMTP_USERNAME", "bot")
    monkeypatch.setenv("PROCURE_SMTP_PASSWORD", "s3cret")
    smtp = SmtpSettings()
    assert (smtp.host, smtp.port, smtp.sender, smtp.tls, smtp.username) == (
        "mail.example.com",
        587,
        "procure@example.com",
        "starttls",
        "bot",
    )
    assert smtp.password is not None and smtp.password.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(smtp)
    context = smtp.tls_context()
    assert context is not None and context.check_hostname


def test_rendering_a_mail_does_not_look_at_the_template_files(monkeypatch) -> None:
    """The templates ship with the package and never change under a running service:
    once loaded, a render reads nothing from disk (jinja2's default stats every
    template file at every render, several times a mail)."""
    mail = Mail("x@example.com", "X", [Item("W", 1, "ch-1", sales_order_id="so-9")])
    notice = Notice(NotificationType.ON_ORDER, "On Order", po_number="PO-000042")
    first = render(notice, mail)  # loads (and compiles) the templates once

    def no_disk(*_: object) -> float:
        raise AssertionError("a template file was looked at")

    monkeypatch.setattr(os.path, "getmtime", no_disk)
    monkeypatch.setattr(os.path, "isfile", no_disk)
    assert render(notice, mail) == first
    assert "PO-000042" in first[0] and "W" in first[1]
