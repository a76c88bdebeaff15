"""Shipping's pure rules: how many units and which serials leave an item when it is
delivered or its delivery canceled (R13, R15), one destination per delivery, and one
pick or packing list document per destination (R14). No I/O here."""

import json
from dataclasses import dataclass, field
from typing import Any

from procure_runtime.errors import Conflict, Invalid


class NotEnoughUnits(Conflict):
    pass


class BadSerials(Invalid):
    pass


class SeveralDestinations(Invalid):
    pass


@dataclass
class Units:
    """The units of one charge at one location on a tab (a Ready or a Delivered item)."""

    item_id: str
    charge_id: str
    location_id: str | None
    quantity: int
    serials: list[str] = field(default_factory=list)


def take(units: Units, quantity: int | None, serials: list[str] | None) -> tuple[int, list[str]]:
    """How many units leave `units`, with which serials: the serials asked for (all among
    the item's), else the system picks the oldest; no quantity means all (or one per
    serial asked for)."""
    if quantity is None:
        quantity = len(serials) if serials else units.quantity
    if quantity < 1:
        raise NotEnoughUnits(f"item {units.item_id!r} has no units left")
    if quantity > units.quantity:
        raise NotEnoughUnits(
            f"item {units.item_id!r} has {units.quantity} units; cannot take {quantity}"
        )
    if not serials:
        return quantity, units.serials[:quantity]
    if len(set(serials)) != len(serials) or len(serials) != quantity:
        raise BadSerials(
            f"item {units.item_id!r}: give {quantity} distinct serial numbers, one per unit"
        )
    if unknown := sorted(set(serials) - set(units.serials)):
        raise BadSerials(f"item {units.item_id!r} does not hold serials {', '.join(unknown)}")
    return quantity, list(serials)


def without(serials: list[str], taken: list[str]) -> list[str]:
    gone = set(taken)
    return [s for s in serials if s not in gone]


def one_destination(destinations: list[dict[str, Any]]) -> dict[str, Any]:
    """A delivery goes to one address: `shipment.delivered` carries one destination."""
    if len({_key(d) for d in destinations}) > 1:
        raise SeveralDestinations(
            "the selected items go to different destinations: deliver them separately"
        )
    return destinations[0]


def by_destination(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """R14: one document per destination address, in the order first selected."""
    documents: dict[str, dict[str, Any]] = {}
    for line in lines:
        destination = line.pop("destination")
        doc = documents.setdefault(_key(destination), {"destination": destination, "items": []})
        doc["items"].append(line)
    return list(documents.values())


def _key(address: dict[str, Any]) -> str:
    return json.dumps(address, sort_keys=True)
