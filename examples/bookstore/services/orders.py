"""orders: takes orders and runs each purchase as a saga over messages (the steps are in `saga`).

It consumes the place-order commands (queue bookstore.orders.commands; two instances compete for them), the
events of catalog, payments and shipping (one durable subscription `orders` on each of their topics), and every
dead-letter queue: a dead command is a failed step of its order, so the saga compensates; anything else dead is
logged and noted in the order's history. It emits the commands of the next step and, once an order is final,
order-shipped / order-cancelled events (topic bookstore.orders.events). Its HTTP API answers queries about orders.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from examples.bookstore import messages as m
from examples.bookstore import saga
from examples.bookstore import topology as t
from examples.bookstore.config import Settings, mom_link
from examples.bookstore.consumer import Consumer, Delivery, Source
from examples.bookstore.db import Database, open_database
from examples.bookstore.momlink import MomLink
from examples.bookstore.web import create_app, json_response, serve
from mom.errors import NotFound

log = logging.getLogger("bookstore.orders")

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    book_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    card TEXT NOT NULL,          -- kept only until the payment settles
    address TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    amount_cents INTEGER,
    tracking TEXT,
    awaiting TEXT NOT NULL,      -- compensations sent and not confirmed, comma-separated
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS orders_by_user ON orders (user, created_at);
CREATE TABLE IF NOT EXISTS history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    status TEXT NOT NULL,        -- the order's status after the step, or 'dead-letter' for a note about one
    note TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_order ON history (order_id, id);
"""

DEAD_LETTER_WAIT_S = 20.0
"""Dead letters are rare: their watchers poll with the longest wait mom allows."""

PUBLIC_COLUMNS = (
    "order_id, user, book_id, quantity, address, status, reason, amount_cents, tracking, created_at, updated_at"
)


def load(conn: sqlite3.Connection, order_id: str) -> saga.Order | None:
    row = conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
    if row is None:
        return None
    awaiting: frozenset[Any] = frozenset(a for a in row["awaiting"].split(",") if a)
    return saga.Order(
        row["order_id"], row["user"], row["book_id"], row["quantity"], row["card"], row["address"], row["status"],
        row["reason"], row["amount_cents"], row["tracking"], awaiting,
    )  # fmt: skip


def store(conn: sqlite3.Connection, step: saga.Step, now: float) -> list[m.Message]:
    """Save the order as the step left it, note the step in its history, and return what to send."""
    o = step.order
    conn.execute(
        "INSERT INTO orders (order_id, user, book_id, quantity, card, address, status, reason, amount_cents, "
        "tracking, awaiting, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (order_id) DO UPDATE SET card = excluded.card, status = excluded.status, "
        "reason = excluded.reason, amount_cents = excluded.amount_cents, tracking = excluded.tracking, "
        "awaiting = excluded.awaiting, updated_at = excluded.updated_at",
        (o.order_id, o.user, o.book_id, o.quantity, o.card, o.address, o.status, o.reason, o.amount_cents,
         o.tracking, ",".join(sorted(o.awaiting)), now, now),
    )  # fmt: skip
    conn.execute(
        "INSERT INTO history (order_id, status, note, at) VALUES (?, ?, ?, ?)", (o.order_id, o.status, step.note, now)
    )
    return step.send


def handle_place(conn: sqlite3.Connection, delivery: Delivery, now: float) -> list[m.Message]:
    command = delivery.message
    assert isinstance(command, m.PlaceOrder)
    if load(conn, command.order_id) is not None:  # placed already, e.g. by a dead-letter watcher's cancellation
        return []
    return store(conn, saga.place(command), now)


def handle_event(conn: sqlite3.Connection, delivery: Delivery, now: float) -> list[m.Message]:
    event = delivery.message
    order = load(conn, event.order_id)
    step = saga.on_event(order, event) if order is not None else None
    if step is None:
        log.info("%s does not apply to order %s (%s): ignored", m.kind_of(event), event.order_id,
                 order.status if order else "unknown")  # fmt: skip
        return []
    return store(conn, step, now)


def handle_dead_letter(conn: sqlite3.Connection, delivery: Delivery, now: float) -> list[m.Message]:
    """A dead letter: a command is a failed step of its order; anything else is noted for an operator."""
    message = delivery.message
    death = delivery.headers.get("x-death") or {}
    dead_queue = str(death.get("queue", "?")) if isinstance(death, dict) else "?"
    log.warning("dead letter from %s: %s (reason %s)", dead_queue, m.key(message), death)
    order = load(conn, message.order_id)
    step = saga.on_dead_letter(order, message, dead_queue) if isinstance(message, m.AnyCommand) else None
    if step is None:
        if order is not None:
            note = f"{m.kind_of(message)} dead-lettered from {dead_queue}; noted, nothing to undo"
            conn.execute(
                "INSERT INTO history (order_id, status, note, at) VALUES (?, 'dead-letter', ?, ?)",
                (order.order_id, note, now),
            )
        return []
    return store(conn, step, now)


def consumers(link: MomLink, db: Database, instance: str) -> list[Consumer]:
    sources: list[tuple[Source, Any, Any]] = [
        (Source(queue=t.ORDERS_COMMANDS), handle_place, m.OrdersCommand),
        (Source(topic=t.CATALOG_EVENTS, subscription="orders"), handle_event, m.CatalogEvent),
        (Source(topic=t.PAYMENTS_EVENTS, subscription="orders"), handle_event, m.PaymentsEvent),
        (Source(topic=t.SHIPPING_EVENTS, subscription="orders"), handle_event, m.ShippingEvent),
    ]
    found = [Consumer(link, db, source, handler, accepts, instance) for source, handler, accepts in sources]
    for dead in t.DEAD_LETTER_QUEUES:
        watcher = Consumer(link, db, Source(queue=dead), handle_dead_letter, m.AnyMessage, instance, "dead:")
        watcher.wait_s = DEAD_LETTER_WAIT_S
        found.append(watcher)
    return found


def build_app(db: Database) -> QuartTrio:
    app = create_app("orders")

    @app.get("/orders")
    async def list_orders() -> Response:
        user = request.args.get("user", "")
        rows = await db.read(
            lambda c: c.execute(
                f"SELECT {PUBLIC_COLUMNS} FROM orders WHERE user = ? ORDER BY created_at DESC LIMIT 200", (user,)
            ).fetchall()
        )
        return json_response({"orders": [dict(row) for row in rows]})

    @app.get("/orders/<order_id>")
    async def show(order_id: str) -> Response:
        def read(conn: sqlite3.Connection) -> dict[str, Any] | None:
            row = conn.execute(f"SELECT {PUBLIC_COLUMNS} FROM orders WHERE order_id = ?", (order_id,)).fetchone()
            if row is None:
                return None
            steps = conn.execute(
                "SELECT status, note, at FROM history WHERE order_id = ? ORDER BY id", (order_id,)
            ).fetchall()
            return {**dict(row), "history": [dict(step) for step in steps]}

        found = await db.read(read)
        if found is None:
            raise NotFound(f"no order {order_id} (yet: a new order appears once the orders service took it)")
        return json_response(found)

    return app


async def run(settings: Settings, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    db = open_database(settings.data_dir, "orders", SCHEMA)
    assert settings.listen is not None
    try:
        async with (
            mom_link(settings) as link,
            trio.open_nursery() as nursery,
        ):
            for consumer in consumers(link, db, settings.name):
                await nursery.start(consumer.run)
            await nursery.start(serve, build_app(db), settings.listen)
            task_status.started()
    finally:
        db.close()
