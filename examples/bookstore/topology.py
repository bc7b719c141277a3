"""Every mom destination the bookstore uses, and what each service may do with them: one place, read by the
provisioning step (which declares them and issues credentials), by the services and by the tests.

Commands travel on queues (one per service that takes commands; its instances compete for them), each with a
dead-letter queue. Events travel on topics (one per service that emits them), read through one durable
subscription per interested service. Subscriptions dead-letter into one shared queue.
"""

from __future__ import annotations

from dataclasses import dataclass

VISIBILITY_TIMEOUT_S = 5.0
"""How long a consumer holds a message before mom gives it to another instance. A handler takes milliseconds;
a dead instance's messages come back this soon."""

MAX_DELIVERIES = 8
"""Deliveries before a message is dead-lettered: enough to ride out a broker failover or a crashed instance,
few enough that a message no handler can process reaches its dead-letter queue within seconds."""

EVENT_RETENTION_S = 12 * 3600.0
"""Events are kept half a day (mom's longest retention) for replay, whether or not subscriptions read them."""

ORDERS_COMMANDS = "bookstore.orders.commands"
CATALOG_COMMANDS = "bookstore.catalog.commands"
PAYMENTS_COMMANDS = "bookstore.payments.commands"
SHIPPING_COMMANDS = "bookstore.shipping.commands"
COMMAND_QUEUES = (ORDERS_COMMANDS, CATALOG_COMMANDS, PAYMENTS_COMMANDS, SHIPPING_COMMANDS)

ORDERS_EVENTS = "bookstore.orders.events"
CATALOG_EVENTS = "bookstore.catalog.events"
PAYMENTS_EVENTS = "bookstore.payments.events"
SHIPPING_EVENTS = "bookstore.shipping.events"
EVENT_TOPICS = (ORDERS_EVENTS, CATALOG_EVENTS, PAYMENTS_EVENTS, SHIPPING_EVENTS)

EVENTS_DLQ = "bookstore.events.dlq"


def dead_letter_queue(queue: str) -> str:
    return f"{queue}.dlq"


DEAD_LETTER_QUEUES = (*(dead_letter_queue(q) for q in COMMAND_QUEUES), EVENTS_DLQ)


@dataclass(frozen=True)
class Subscription:
    """A durable subscription: `service` reads every event of `topic` under its own name."""

    topic: str
    service: str

    @property
    def name(self) -> str:
        return self.service


SUBSCRIPTIONS = (
    Subscription(CATALOG_EVENTS, "orders"),
    Subscription(PAYMENTS_EVENTS, "orders"),
    Subscription(SHIPPING_EVENTS, "orders"),
    Subscription(ORDERS_EVENTS, "catalog"),
)


def _read(*names: str) -> list[str]:
    return [f"mom.read:{n}" for n in names]


def _write(*names: str) -> list[str]:
    return [f"mom.write:{n}" for n in names]


SCOPES: dict[str, list[str]] = {
    "gateway": _write(ORDERS_COMMANDS),
    "orders": [
        *_read(ORDERS_COMMANDS, CATALOG_EVENTS, PAYMENTS_EVENTS, SHIPPING_EVENTS, *DEAD_LETTER_QUEUES),
        *_write(CATALOG_COMMANDS, PAYMENTS_COMMANDS, SHIPPING_COMMANDS, ORDERS_EVENTS),
    ],
    "catalog": [*_read(CATALOG_COMMANDS, ORDERS_EVENTS), *_write(CATALOG_EVENTS)],
    "payments": [*_read(PAYMENTS_COMMANDS), *_write(PAYMENTS_EVENTS)],
    "shipping": [*_read(SHIPPING_COMMANDS), *_write(SHIPPING_EVENTS)],
}
"""Least privilege: each service's OAuth client may read what it consumes and write what it emits, nothing else
(no configure: the provisioning step declares the topology). The auth service does not use mom."""
