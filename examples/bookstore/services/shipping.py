"""shipping: sends parcels (simulated) and says so.

Commands (queue bookstore.shipping.commands): ship an order. Events (topic bookstore.shipping.events): parcel
shipped with a tracking number, or shipment failed. The carrier does not deliver to Atlantis, which is how the
refund path of the saga can be tried by hand. Each parcel is a row of `shipments`; the processed-message record
makes sure a redelivered command does not send a second parcel.
"""

from __future__ import annotations

import secrets
import sqlite3

import trio

from examples.bookstore import messages as m
from examples.bookstore import topology as t
from examples.bookstore.config import Settings, mom_link
from examples.bookstore.consumer import Consumer, Delivery, Source
from examples.bookstore.db import open_database

UNSERVED = "atlantis"

SCHEMA = """
CREATE TABLE IF NOT EXISTS shipments (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    tracking TEXT NOT NULL,
    address TEXT NOT NULL,
    at REAL NOT NULL
);
"""


def handle_command(conn: sqlite3.Connection, delivery: Delivery, now: float) -> list[m.Message]:
    command = delivery.message
    assert isinstance(command, m.ShipOrder)
    if UNSERVED in command.address.lower():
        return [m.ShipmentFailed(order_id=command.order_id, reason="the carrier does not deliver to Atlantis")]
    tracking = "BK" + secrets.token_hex(5).upper()
    conn.execute(
        "INSERT INTO shipments (order_id, tracking, address, at) VALUES (?, ?, ?, ?)",
        (command.order_id, tracking, command.address, now),
    )
    return [m.ParcelShipped(order_id=command.order_id, tracking=tracking)]


async def run(settings: Settings, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    db = open_database(settings.data_dir, "shipping", SCHEMA)
    try:
        async with (
            mom_link(settings) as link,
            trio.open_nursery() as nursery,
        ):
            source = Source(queue=t.SHIPPING_COMMANDS)
            await nursery.start(Consumer(link, db, source, handle_command, m.ShippingCommand, settings.name).run)
            task_status.started()
    finally:
        db.close()
