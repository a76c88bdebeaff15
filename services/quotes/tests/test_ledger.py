"""The charge status ledger: statuses derived from monotonic counters, so any arrival
order of the same events gives the same statuses, always summing to the quantity."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from procure_contracts.status import UnitStatus as U
from procure_quotes.domain import Ledger, TooEarly, can_fulfill

ALL_ZERO = dict.fromkeys(U, 0)


def units(ledger: Ledger) -> dict[U, int]:
    return {s: n for s, n in ledger.units().items() if n}


def test_a_new_procurement_charge_needs_ordering() -> None:
    assert units(Ledger(quantity=5)) == {U.NEED_TO_ORDER: 5}


def test_the_seed_flow_moves_units_through_every_status() -> None:
    led = Ledger(quantity=5)
    led = led.pick(2)
    assert units(led) == {U.READY: 2, U.NEED_TO_ORDER: 3}
    led = led.request_approval("a1", 3)
    assert units(led) == {U.READY: 2, U.WAITING_APPROVAL: 3}
    led = led.decide("a1", 3, approved=True)
    led = led.order("l1", 3)
    assert units(led) == {U.READY: 2, U.ON_ORDER: 3}
    led = led.receive("l1", 1)
    assert units(led) == {U.READY: 3, U.NEED_TO_ORDER: 2}  # the open rest of a partly received line
    led = led.receive("l1", 2)
    led = led.deliver(1, 4)
    assert units(led) == {U.READY: 1, U.DELIVERED: 4}
    assert not led.can_fulfill
    led = led.deliver(2, 1)
    assert units(led) == {U.DELIVERED: 5}
    assert led.can_fulfill
    led = led.cancel_delivery(3, 2)
    assert units(led) == {U.READY: 2, U.DELIVERED: 3}
    assert not led.can_fulfill


def test_rejected_units_are_canceled_and_count_as_done() -> None:
    led = (
        Ledger(quantity=2, ready_direct=1).request_approval("a1", 1).decide("a1", 1, approved=False)
    )
    assert units(led) == {U.READY: 1, U.CANCELED: 1}
    assert can_fulfill([led.deliver(1, 1)])


def test_a_decision_seen_before_its_request_never_shows_waiting_units() -> None:
    led = Ledger(quantity=4).decide("a1", 4, approved=True)
    assert units(led) == {U.NEED_TO_ORDER: 4}
    assert units(led.request_approval("a1", 4)) == {U.NEED_TO_ORDER: 4}
    assert led.decide("a1", 4, approved=False) == led  # decided once


def test_a_closed_line_returns_its_rest_to_need_to_order() -> None:
    led = Ledger(quantity=4).order("l1", 4)
    assert units(led) == {U.ON_ORDER: 4}
    assert units(led.close_line("l1")) == {U.NEED_TO_ORDER: 4}
    assert units(led.receive("l1", 1).close_line("l1")) == {U.READY: 1, U.NEED_TO_ORDER: 3}


@pytest.mark.parametrize(
    "step",
    [
        lambda led: led.receive("l1", 1),  # receipt before the PO line
        lambda led: led.deliver(2, 1),  # a gap in shipping's seq
        lambda led: led.deliver(1, 1),  # delivery before the units are ready
        lambda led: led.cancel_delivery(1, 1),  # cancel before the delivery
    ],
)
def test_an_event_that_would_go_negative_or_skip_ahead_is_too_early(step) -> None:
    with pytest.raises(TooEarly):
        step(Ledger(quantity=3))


# --- property: any arrival order, same end state ------------------------------------------

# One charge of 6 units: 2 reserved and picked, 4 sent to procurement, 4 approved, two PO
# lines (3 + 1), line 1 received 1 then 2, line 2 closed, 5 delivered in two deliveries,
# one unit's delivery canceled and delivered again.
EVENTS = [
    ("picked", lambda led: led.pick(2)),
    ("approval.requested", lambda led: led.request_approval("a1", 4)),
    ("approval.decided", lambda led: led.decide("a1", 4, approved=True)),
    ("po.submitted l1", lambda led: led.order("l1", 3)),
    ("po.submitted l2", lambda led: led.order("l2", 1)),
    ("received l1 a", lambda led: led.receive("l1", 1)),
    ("received l1 b", lambda led: led.receive("l1", 2)),
    ("line_closed l2", lambda led: led.close_line("l2")),
    ("delivered seq1", lambda led: led.deliver(1, 3)),
    ("delivered seq2", lambda led: led.deliver(2, 2)),
    ("canceled seq3", lambda led: led.cancel_delivery(3, 1)),
    ("delivered seq4", lambda led: led.deliver(4, 1)),
]


def apply_with_parking(order: list[int]) -> Ledger:
    """Apply events in `order`, parking those that arrive too early and retrying them
    after every applied event, as the runtime does."""
    led = Ledger(quantity=6)
    parked: list[int] = []
    for index in order:
        parked.append(index)
        progress = True
        while progress:
            progress = False
            for waiting in list(parked):
                try:
                    led = EVENTS[waiting][1](led)
                except TooEarly:
                    continue
                parked.remove(waiting)
                progress = True
                counts = led.units()
                assert sum(counts.values()) == 6
                assert all(n >= 0 for n in counts.values())
                done = counts[U.DELIVERED] + counts[U.CANCELED]
                assert led.can_fulfill == (done == 6)
    assert parked == []
    return led


@settings(max_examples=300, deadline=None)
@given(st.permutations(range(len(EVENTS))))
def test_any_arrival_order_gives_the_same_statuses(order: list[int]) -> None:
    led = apply_with_parking(order)
    assert units(led) == {U.DELIVERED: 5, U.NEED_TO_ORDER: 1}
    assert led == apply_with_parking(list(range(len(EVENTS))))


def test_only_deliveries_and_cancellations_change_what_a_sales_order_reads() -> None:
    """A sales order's status and `can_fulfill` read `order_view` alone (R16), so the
    steps that leave it (asking approval, an approval given, ordering, receiving,
    closing a line, picking) need not read or lock the order."""
    led = Ledger(quantity=4)
    view = led.order_view
    for step in (
        lambda x: x.request_approval("a1", 1),
        lambda x: x.decide("a1", 1, approved=True),
        lambda x: x.order("l1", 2),
        lambda x: x.receive("l1", 1),
        lambda x: x.close_line("l1"),
        lambda x: x.pick(1),
    ):
        led = step(led)
        assert led.order_view == view
    picked = Ledger(quantity=2).pick(1)
    delivered = picked.deliver(1, 1)
    assert delivered.order_view == (1, False) != picked.order_view == (0, False)
    assert delivered.cancel_delivery(2, 1).order_view == (0, False)
    assert delivered.decide("a2", 1, approved=False).order_view == (1, True)
