"""The messages the services exchange, where each kind travels, and the key that makes handling it idempotent.

Every message is about one order and happens at most once per order, so `key(message)` (its type and the order
id) is a business key: it is the message's dedup id at mom (a retried publish is stored once) and the id a
consumer records in its database once it has handled the message (a redelivery is recognised and not applied
twice).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from examples.bookstore import topology as t


class Message(msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=True):
    order_id: str


# -- commands to the orders service (from the gateway)


class PlaceOrder(Message, frozen=True, tag="place-order"):
    user: str
    book_id: int
    quantity: int
    card: str
    address: str


# -- commands to the catalog, and its events


class ReserveStock(Message, frozen=True, tag="reserve-stock"):
    book_id: int
    quantity: int


class ReleaseStock(Message, frozen=True, tag="release-stock"):
    pass


class StockReserved(Message, frozen=True, tag="stock-reserved"):
    amount_cents: int


class StockRejected(Message, frozen=True, tag="stock-rejected"):
    reason: str


class StockReleased(Message, frozen=True, tag="stock-released"):
    pass


# -- commands to payments, and its events


class ChargePayment(Message, frozen=True, tag="charge-payment"):
    amount_cents: int
    card: str


class RefundPayment(Message, frozen=True, tag="refund-payment"):
    pass


class PaymentCharged(Message, frozen=True, tag="payment-charged"):
    amount_cents: int


class PaymentDeclined(Message, frozen=True, tag="payment-declined"):
    reason: str


class PaymentRefunded(Message, frozen=True, tag="payment-refunded"):
    amount_cents: int


# -- commands to shipping, and its events


class ShipOrder(Message, frozen=True, tag="ship-order"):
    address: str


class ParcelShipped(Message, frozen=True, tag="parcel-shipped"):
    tracking: str


class ShipmentFailed(Message, frozen=True, tag="shipment-failed"):
    reason: str


# -- the orders service's events


class OrderShipped(Message, frozen=True, tag="order-shipped"):
    book_id: int
    quantity: int


class OrderCancelled(Message, frozen=True, tag="order-cancelled"):
    book_id: int
    quantity: int
    reason: str


OrdersCommand = PlaceOrder
CatalogCommand = ReserveStock | ReleaseStock
CatalogEvent = StockReserved | StockRejected | StockReleased
PaymentsCommand = ChargePayment | RefundPayment
PaymentsEvent = PaymentCharged | PaymentDeclined | PaymentRefunded
ShippingCommand = ShipOrder
ShippingEvent = ParcelShipped | ShipmentFailed
OrdersEvent = OrderShipped | OrderCancelled
AnyCommand = PlaceOrder | ReserveStock | ReleaseStock | ChargePayment | RefundPayment | ShipOrder
AnyEvent = CatalogEvent | PaymentsEvent | ShippingEvent | OrdersEvent
AnyMessage = AnyCommand | AnyEvent

Kind = Literal["queue", "topic"]

ROUTES: dict[type[Message], tuple[Kind, str]] = {
    PlaceOrder: ("queue", t.ORDERS_COMMANDS),
    ReserveStock: ("queue", t.CATALOG_COMMANDS),
    ReleaseStock: ("queue", t.CATALOG_COMMANDS),
    StockReserved: ("topic", t.CATALOG_EVENTS),
    StockRejected: ("topic", t.CATALOG_EVENTS),
    StockReleased: ("topic", t.CATALOG_EVENTS),
    ChargePayment: ("queue", t.PAYMENTS_COMMANDS),
    RefundPayment: ("queue", t.PAYMENTS_COMMANDS),
    PaymentCharged: ("topic", t.PAYMENTS_EVENTS),
    PaymentDeclined: ("topic", t.PAYMENTS_EVENTS),
    PaymentRefunded: ("topic", t.PAYMENTS_EVENTS),
    ShipOrder: ("queue", t.SHIPPING_COMMANDS),
    ParcelShipped: ("topic", t.SHIPPING_EVENTS),
    ShipmentFailed: ("topic", t.SHIPPING_EVENTS),
    OrderShipped: ("topic", t.ORDERS_EVENTS),
    OrderCancelled: ("topic", t.ORDERS_EVENTS),
}
"""Where each kind of message goes: what exchanges and bindings say in RabbitMQ, as one table."""


def kind_of(message: Message) -> str:
    return str(type(message).__struct_config__.tag)


def key(message: Message) -> str:
    """The business key: the message's dedup id at mom and its processed-id in the consumer's database."""
    return f"{kind_of(message)}:{message.order_id}"


def route(message: Message) -> tuple[Kind, str]:
    return ROUTES[type(message)]


def encode(message: Message) -> dict[str, Any]:
    """The message as a JSON body (with its `type`)."""
    body: dict[str, Any] = msgspec.to_builtins(message)
    return body


def decode(body: Any, kind: Any) -> Message:
    """A body as one of the message types in `kind` (a class or a union); msgspec.ValidationError if it is not."""
    decoded: Message = msgspec.convert(body, kind)
    return decoded
