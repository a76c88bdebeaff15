"""The notifier's pure rules (section 6): who are a charge's stakeholders, and how the
items an event touches become one email per address, with its subject."""

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, field


class NotificationType(enum.StrEnum):
    APPROVAL_REQUESTED = "approval_requested"
    APPROVAL_DECIDED = "approval_decided"
    FORWARDED_TO_PURCHASING = "forwarded_to_purchasing"
    ON_ORDER = "on_order"
    RECEIVED = "received"
    DELIVERED = "delivered"
    DELIVERY_CANCELED = "delivery_canceled"
    READY_TO_FULFILL = "ready_to_fulfill"


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"  # waiting for (another) send attempt
    SENT = "sent"
    FAILED = "failed"  # the server refused the recipient for good; never retried


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    email: str


@dataclass(frozen=True)
class ChargeInfo:
    """A charge as the stakeholder directory knows it."""

    id: str
    owner: Person
    parent_kind: str
    parent_id: str
    parent_name: str
    product: str
    quantity: int
    sales_order_id: str | None = None
    primary_resource: Person | None = None  # tickets
    project_lead: Person | None = None  # projects
    opportunity_owner: Person | None = None  # quoted items only
    sales_order_owner: Person | None = None
    order_known: bool = True  # False: its sales order's opportunity.won not seen yet

    @property
    def parent(self) -> str:
        return f"{self.parent_kind.capitalize()} {self.parent_id} ({self.parent_name})"


def stakeholders(charge: ChargeInfo) -> list[Person]:
    """The charge owner, the ticket's primary resource or the project's lead, the
    opportunity owner of a quoted item, and the sales order owner (duplicates removed
    later, by address)."""
    people = [charge.owner]
    if charge.parent_kind == "ticket" and charge.primary_resource:
        people.append(charge.primary_resource)
    if charge.parent_kind == "project" and charge.project_lead:
        people.append(charge.project_lead)
    if charge.opportunity_owner:
        people.append(charge.opportunity_owner)
    if charge.sales_order_owner:
        people.append(charge.sales_order_owner)
    return people


@dataclass(frozen=True)
class Item:
    """One line of an email: what changed for one charge (or one PO line)."""

    product: str
    quantity: int
    charge_id: str | None = None
    parent: str | None = None
    sales_order_id: str | None = None
    po_number: str | None = None


def product_label(name: str, sku: str) -> str:
    return f"{name} ({sku})"


def item_of(charge: ChargeInfo, quantity: int, po_number: str | None = None) -> Item:
    return Item(
        product=charge.product,
        quantity=quantity,
        charge_id=charge.id,
        parent=charge.parent,
        sales_order_id=charge.sales_order_id,
        po_number=po_number,
    )


@dataclass
class Mail:
    recipient: str  # the address, lower-cased: one email per address and event
    name: str
    items: list[Item] = field(default_factory=list)


def address_key(email: str) -> str:
    return email.strip().lower()


# The notification log's `recipient` column (RFC 5321's 64-character local part, "@" and
# 255-character domain).
MAX_ADDRESS = 320
# Whitespace, control characters and RFC 5322's specials but "@" and ".": none can stand
# unquoted in a mailbox, and aiosmtplib refuses the address or mails a part of it.
_NOT_IN_ADDRESS = re.compile(r'[\s\x00-\x1f\x7f-\x9f()<>\[\]:;,\\"]')


def unmailable(address: str) -> str | None:
    """Why an address (an `address_key`) is not recorded, or None: one that is empty,
    too long for the log, or not a plain `local@domain`, is skipped, so it can neither
    fail the event's other rows nor be retried forever."""
    if not address:
        return "empty"
    if len(address) > MAX_ADDRESS:
        return "too long"
    local, _, domain = address.partition("@")
    if not local or not domain or "@" in domain or _NOT_IN_ADDRESS.search(address):
        return "not a mailbox"
    return None


def mails_for(audience: Iterable[tuple[Item, Iterable[Person]]]) -> list[Mail]:
    """One mail per address listing every item of theirs, whatever roles they hold."""
    by_address: dict[str, Mail] = {}
    for item, people in audience:
        addresses = {address_key(p.email): p.name for p in people if address_key(p.email)}
        for key, name in addresses.items():  # one person in two roles: the item once
            by_address.setdefault(key, Mail(key, name)).items.append(item)
    return list(by_address.values())


def team_mails(team: Iterable[str], items: list[Item]) -> list[Mail]:
    """The purchasing team (addresses only): each gets every item."""
    keys = dict.fromkeys(address_key(e) for e in team if address_key(e))
    return [Mail(key, "purchasing team", list(items)) for key in keys]


@dataclass(frozen=True)
class Notice:
    """What an event announces: its type, the new status, and any details (a note)."""

    type: NotificationType
    status: str
    po_number: str | None = None
    sales_order_id: str | None = None
    details: tuple[tuple[str, str], ...] = ()


def subject(notice: Notice, mail: Mail) -> str:
    """Names the new status and the PO number, else the sales order(s) of the items."""
    if notice.po_number:
        return f"{notice.status}: {notice.po_number}"
    orders = list(dict.fromkeys(i.sales_order_id for i in mail.items if i.sales_order_id))
    if notice.sales_order_id and notice.sales_order_id not in orders:
        orders.insert(0, notice.sales_order_id)
    if orders:
        word = "sales order" if len(orders) == 1 else "sales orders"
        return f"{notice.status}: {word} {', '.join(orders)}"
    charges = list(dict.fromkeys(i.charge_id for i in mail.items if i.charge_id))
    return f"{notice.status}: charge {', '.join(charges)}"
