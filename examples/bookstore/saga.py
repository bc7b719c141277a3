"""The purchase saga, as a pure state machine: an order's state and an incoming message give its next state and
the messages to send. The orders service stores the state and sends the messages; this module does no I/O.

    reserving --stock-reserved--> charging --payment-charged--> shipping --parcel-shipped--> shipped
        |                            |                              |
    stock-rejected            payment-declined               shipment-failed
        v                            v                              v
    cancelled          compensating (release stock)    compensating (release stock, refund)
                                     \\___ every compensation confirmed ___/--> cancelled

A message that does not fit the order's state (a late or repeated event) changes nothing. A command that was
dead-lettered (its service could not handle it) counts as that step failing, and compensation runs: a release
or refund of something that never happened is a confirmed no-op, and it stops a late reservation or charge.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from examples.bookstore import messages as m

Status = Literal["reserving", "charging", "shipping", "shipped", "compensating", "cancelled"]
FINAL: frozenset[str] = frozenset({"shipped", "cancelled"})
Pending = Literal["release", "refund"]


@dataclass(frozen=True)
class Order:
    order_id: str
    user: str
    book_id: int
    quantity: int
    card: str
    address: str
    status: Status
    reason: str | None = None
    amount_cents: int | None = None
    tracking: str | None = None
    awaiting: frozenset[Pending] = frozenset()
    """Compensations sent and not yet confirmed."""


@dataclass(frozen=True)
class Step:
    order: Order
    send: list[m.Message]
    note: str


def place(command: m.PlaceOrder) -> Step:
    order = Order(
        command.order_id, command.user, command.book_id, command.quantity, command.card, command.address, "reserving"
    )
    reserve = m.ReserveStock(order_id=order.order_id, book_id=order.book_id, quantity=order.quantity)
    return Step(order, [reserve], "placed; reserving stock")


def _cancelled(order: Order, reason: str) -> Step:
    done = replace(order, status="cancelled", reason=reason, awaiting=frozenset(), card="")
    event = m.OrderCancelled(order_id=order.order_id, book_id=order.book_id, quantity=order.quantity, reason=reason)
    return Step(done, [event], f"cancelled: {reason}")


def _compensate(order: Order, reason: str, pending: frozenset[Pending]) -> Step:
    sends: list[m.Message] = []
    if "release" in pending:
        sends.append(m.ReleaseStock(order_id=order.order_id))
    if "refund" in pending:
        sends.append(m.RefundPayment(order_id=order.order_id))
    undoing = replace(order, status="compensating", reason=reason, awaiting=pending, card="")
    return Step(undoing, sends, f"{reason}; undoing: {', '.join(sorted(pending))}")


def _confirmed(order: Order, done: Pending) -> Step | None:
    if order.status != "compensating" or done not in order.awaiting:
        return None
    left = order.awaiting - {done}
    if not left:
        return _cancelled(order, order.reason or "cancelled")
    return Step(replace(order, awaiting=left), [], f"{done} confirmed; waiting for {', '.join(sorted(left))}")


def on_event(order: Order, event: m.Message) -> Step | None:
    """The order's next step on an event, or None if the event does not apply to its state."""
    match order.status, event:
        case "reserving", m.StockReserved(amount_cents=amount):
            charge = m.ChargePayment(order_id=order.order_id, amount_cents=amount, card=order.card)
            return Step(replace(order, status="charging", amount_cents=amount), [charge], "stock reserved; charging")
        case "reserving", m.StockRejected(reason=reason):
            return _cancelled(order, f"stock: {reason}")
        case "charging", m.PaymentCharged():
            ship = m.ShipOrder(order_id=order.order_id, address=order.address)
            return Step(replace(order, status="shipping", card=""), [ship], "payment charged; shipping")
        case "charging", m.PaymentDeclined(reason=reason):
            return _compensate(order, f"payment declined: {reason}", frozenset({"release"}))
        case "shipping", m.ParcelShipped(tracking=tracking):
            done = replace(order, status="shipped", tracking=tracking)
            event_out = m.OrderShipped(order_id=order.order_id, book_id=order.book_id, quantity=order.quantity)
            return Step(done, [event_out], f"shipped, tracking {tracking}")
        case "shipping", m.ShipmentFailed(reason=reason):
            return _compensate(order, f"shipment failed: {reason}", frozenset({"release", "refund"}))
        case _, m.StockReleased():
            return _confirmed(order, "release")
        case _, m.PaymentRefunded():
            return _confirmed(order, "refund")
    return None


def on_dead_letter(order: Order | None, command: m.Message, dead_queue: str) -> Step | None:
    """The next step when `command` about this order was dead-lettered from `dead_queue`, or None."""
    why = f"{m.kind_of(command)} dead-lettered from {dead_queue}"
    if order is None:
        if isinstance(command, m.PlaceOrder):
            return _cancelled(place(command).order, f"could not be placed: {why}")
        return None
    match order.status, command:
        case "reserving", m.ReserveStock():
            return _compensate(order, why, frozenset({"release"}))
        case "charging", m.ChargePayment():
            return _compensate(order, why, frozenset({"release", "refund"}))
        case "shipping", m.ShipOrder():
            return _compensate(order, why, frozenset({"release", "refund"}))
        case "compensating", m.ReleaseStock() | m.RefundPayment():
            return Step(order, [], f"{why}: compensation stuck, needs an operator")
    return None
