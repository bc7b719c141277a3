"""catalog: the books users put up for sale and their stock.

Commands (queue bookstore.catalog.commands): reserve stock for an order, release it. Events it emits (topic
bookstore.catalog.events): stock reserved / rejected / released. It also reads the orders service's events
(subscription `catalog`) into a read model of the orders for its books (CQRS): a shipped order makes its
reservation final and counts as a sale, and sellers see their sales.

A reservation is keyed by order id, so a release that overtakes its reservation (possible when a reserve
command was dead-lettered while still being handled) leaves a tombstone and the late reservation is refused.
"""

from __future__ import annotations

import sqlite3
from typing import Annotated

import msgspec
import trio
from quart import Response, request
from quart_trio import QuartTrio

from examples.bookstore import messages as m
from examples.bookstore import topology as t
from examples.bookstore.config import Settings, mom_link
from examples.bookstore.consumer import Consumer, Delivery, Source
from examples.bookstore.db import Database, open_database
from examples.bookstore.web import create_app, json_body, json_response, serve
from mom.errors import InvalidInput, NotFound

SCHEMA = """
CREATE TABLE IF NOT EXISTS books (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    title TEXT NOT NULL,
    author TEXT NOT NULL,
    price_cents INTEGER NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0),
    sold INTEGER NOT NULL DEFAULT 0,
    seller TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    order_id TEXT PRIMARY KEY,
    book_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('reserved', 'released', 'committed')),
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS order_view (
    order_id TEXT PRIMARY KEY,
    book_id INTEGER NOT NULL,
    quantity INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    updated_at REAL NOT NULL
);
"""

SEED = [
    ("The Name of the Rose", "Umberto Eco", 1200, 3),
    ("Invisible Cities", "Italo Calvino", 900, 2),
    ("The Master and Margarita", "Mikhail Bulgakov", 1100, 4),
    ("Ficciones", "Jorge Luis Borges", 800, 5),
]
"""A few second-hand books sold by the shop itself, so a fresh shop has something to buy."""

BOOK_COLUMNS = "id, title, author, price_cents, stock, sold, seller"


class NewBook(msgspec.Struct, forbid_unknown_fields=True):
    title: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    author: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    price_cents: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)]
    stock: Annotated[int, msgspec.Meta(ge=1, le=100_000)]
    seller: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]


def seed(conn: sqlite3.Connection, now: float) -> None:
    if conn.execute("SELECT COUNT(*) FROM books").fetchone()[0] == 0:
        conn.executemany(
            "INSERT INTO books (title, author, price_cents, stock, seller, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            [(title, author, price, stock, "bookstore", now) for title, author, price, stock in SEED],
        )


def _reserve(conn: sqlite3.Connection, command: m.ReserveStock, now: float) -> m.Message:
    existing = conn.execute("SELECT state FROM reservations WHERE order_id = ?", (command.order_id,)).fetchone()
    if existing is not None:  # a tombstone left by an earlier release: the order is being cancelled
        return m.StockRejected(order_id=command.order_id, reason="the order was cancelled")
    book = conn.execute("SELECT price_cents, stock FROM books WHERE id = ?", (command.book_id,)).fetchone()
    if book is None:
        return m.StockRejected(order_id=command.order_id, reason=f"no book {command.book_id}")
    if command.quantity < 1 or book["stock"] < command.quantity:
        return m.StockRejected(order_id=command.order_id, reason="out of stock")
    conn.execute("UPDATE books SET stock = stock - ? WHERE id = ?", (command.quantity, command.book_id))
    conn.execute(
        "INSERT INTO reservations (order_id, book_id, quantity, state, updated_at) VALUES (?, ?, ?, 'reserved', ?)",
        (command.order_id, command.book_id, command.quantity, now),
    )
    return m.StockReserved(order_id=command.order_id, amount_cents=book["price_cents"] * command.quantity)


def _release(conn: sqlite3.Connection, command: m.ReleaseStock, now: float) -> m.Message:
    row = conn.execute("SELECT book_id, quantity, state FROM reservations WHERE order_id = ?", (command.order_id,))
    reservation = row.fetchone()
    if reservation is None:
        conn.execute(
            "INSERT INTO reservations (order_id, book_id, quantity, state, updated_at) VALUES (?, 0, 0, 'released', ?)",
            (command.order_id, now),
        )
    elif reservation["state"] == "reserved":
        conn.execute(
            "UPDATE books SET stock = stock + ? WHERE id = ?", (reservation["quantity"], reservation["book_id"])
        )
        conn.execute(
            "UPDATE reservations SET state = 'released', updated_at = ? WHERE order_id = ?", (now, command.order_id)
        )
    return m.StockReleased(order_id=command.order_id)


def handle_command(conn: sqlite3.Connection, delivery: Delivery, now: float) -> list[m.Message]:
    match delivery.message:
        case m.ReserveStock() as command:
            return [_reserve(conn, command, now)]
        case m.ReleaseStock() as command:
            return [_release(conn, command, now)]
    raise InvalidInput(f"catalog cannot handle {m.kind_of(delivery.message)}")


def handle_order_event(conn: sqlite3.Connection, delivery: Delivery, now: float) -> list[m.Message]:
    """The read model: the final state of every order of a book, and the sale made final when it shipped."""
    event = delivery.message
    assert isinstance(event, m.OrderShipped | m.OrderCancelled)
    shipped = isinstance(event, m.OrderShipped)
    reason = event.reason if isinstance(event, m.OrderCancelled) else None
    conn.execute(
        "INSERT OR REPLACE INTO order_view (order_id, book_id, quantity, status, reason, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (event.order_id, event.book_id, event.quantity, "shipped" if shipped else "cancelled", reason, now),
    )
    if shipped:
        committed = conn.execute(
            "UPDATE reservations SET state = 'committed', updated_at = ? WHERE order_id = ? AND state = 'reserved'",
            (now, event.order_id),
        )
        if committed.rowcount:
            conn.execute("UPDATE books SET sold = sold + ? WHERE id = ?", (event.quantity, event.book_id))
    return []


def build_app(db: Database) -> QuartTrio:
    app = create_app("catalog")

    @app.get("/books")
    async def books() -> Response:
        rows = await db.read(lambda c: c.execute(f"SELECT {BOOK_COLUMNS} FROM books ORDER BY id").fetchall())
        return json_response({"books": [dict(row) for row in rows]})

    @app.get("/books/<int:book_id>")
    async def book(book_id: int) -> Response:
        row = await db.read(
            lambda c: c.execute(f"SELECT {BOOK_COLUMNS} FROM books WHERE id = ?", (book_id,)).fetchone()
        )
        if row is None:
            raise NotFound(f"no book {book_id}")
        return json_response(dict(row))

    @app.post("/books")
    async def publish_book() -> Response:
        new = await json_body(NewBook)

        def insert(conn: sqlite3.Connection) -> sqlite3.Row:
            cursor = conn.execute(
                "INSERT INTO books (title, author, price_cents, stock, seller, created_at) VALUES (?, ?, ?, ?, ?, ?)",
                (new.title, new.author, new.price_cents, new.stock, new.seller, db.clock()),
            )
            row: sqlite3.Row = conn.execute(
                f"SELECT {BOOK_COLUMNS} FROM books WHERE id = ?", (cursor.lastrowid,)
            ).fetchone()
            return row

        return json_response(dict(await db.write(insert)), status=201)

    @app.get("/sales")
    async def sales() -> Response:
        seller = request.args.get("seller", "")
        rows = await db.read(
            lambda c: c.execute(
                "SELECT o.order_id, o.book_id, b.title, o.quantity, o.status, o.reason, o.updated_at "
                "FROM order_view o JOIN books b ON b.id = o.book_id WHERE b.seller = ? ORDER BY o.updated_at DESC",
                (seller,),
            ).fetchall()
        )
        return json_response({"sales": [dict(row) for row in rows]})

    return app


async def run(settings: Settings, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    db = open_database(settings.data_dir, "catalog", SCHEMA)
    await db.write(lambda conn: seed(conn, db.clock()))
    assert settings.listen is not None
    try:
        async with (
            mom_link(settings) as link,
            trio.open_nursery() as nursery,
        ):
            for source, handler, accepts in (
                (Source(queue=t.CATALOG_COMMANDS), handle_command, m.CatalogCommand),
                (Source(topic=t.ORDERS_EVENTS, subscription="catalog"), handle_order_event, m.OrdersEvent),
            ):
                await nursery.start(Consumer(link, db, source, handler, accepts, settings.name).run)
            await nursery.start(serve, build_app(db), settings.listen)
            task_status.started()
    finally:
        db.close()
