"""payments: charges and refunds against a simulated card processor.

Commands (queue bookstore.payments.commands, two instances compete for them): charge an order, refund it.
Events (topic bookstore.payments.events): charged, declined, refunded.

The card rules are those of a payment provider's test mode: a number that fails the Luhn check is refused, and
4000 0000 0000 0002 is always declined (so the compensation path can be tried by hand).
Every movement of money is a row of the append-only `ledger`; the `payments` table holds each order's state,
so a redelivered charge, or a charge that arrives after the order was refunded, moves no money.
"""

from __future__ import annotations

import sqlite3

import trio

from examples.bookstore import messages as m
from examples.bookstore import topology as t
from examples.bookstore.config import Settings, mom_link
from examples.bookstore.consumer import Consumer, Delivery, Source
from examples.bookstore.db import open_database
from mom.errors import InvalidInput

DECLINED_CARD = "4000000000000002"

SCHEMA = """
CREATE TABLE IF NOT EXISTS payments (
    order_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('charged', 'declined', 'refunded', 'voided')),
    amount_cents INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS ledger (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    order_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('charge', 'refund')),
    amount_cents INTEGER NOT NULL,
    card_last4 TEXT NOT NULL,
    at REAL NOT NULL
);
"""


def luhn_ok(number: str) -> bool:
    if not number.isdigit() or not 12 <= len(number) <= 19:
        return False
    total = 0
    for i, digit in enumerate(int(c) for c in reversed(number)):
        doubled = digit * 2 if i % 2 else digit
        total += doubled - 9 if doubled > 9 else doubled
    return total % 10 == 0


def _charge(conn: sqlite3.Connection, command: m.ChargePayment, now: float) -> m.Message:
    row = conn.execute("SELECT state, amount_cents FROM payments WHERE order_id = ?", (command.order_id,)).fetchone()
    if row is not None:
        if row["state"] == "charged":
            return m.PaymentCharged(order_id=command.order_id, amount_cents=row["amount_cents"])
        return m.PaymentDeclined(order_id=command.order_id, reason=f"the payment was {row['state']}")
    if not luhn_ok(command.card):
        reason = "invalid card number"
    elif command.card == DECLINED_CARD:
        reason = "card declined by the issuer"
    else:
        conn.execute(
            "INSERT INTO ledger (order_id, kind, amount_cents, card_last4, at) VALUES (?, 'charge', ?, ?, ?)",
            (command.order_id, command.amount_cents, command.card[-4:], now),
        )
        conn.execute(
            "INSERT INTO payments (order_id, state, amount_cents, updated_at) VALUES (?, 'charged', ?, ?)",
            (command.order_id, command.amount_cents, now),
        )
        return m.PaymentCharged(order_id=command.order_id, amount_cents=command.amount_cents)
    conn.execute(
        "INSERT INTO payments (order_id, state, amount_cents, updated_at) VALUES (?, 'declined', 0, ?)",
        (command.order_id, now),
    )
    return m.PaymentDeclined(order_id=command.order_id, reason=reason)


def _refund(conn: sqlite3.Connection, command: m.RefundPayment, now: float) -> m.Message:
    row = conn.execute("SELECT state, amount_cents FROM payments WHERE order_id = ?", (command.order_id,)).fetchone()
    if row is None:  # nothing charged yet: void the order so that a late charge is declined
        conn.execute(
            "INSERT INTO payments (order_id, state, amount_cents, updated_at) VALUES (?, 'voided', 0, ?)",
            (command.order_id, now),
        )
        return m.PaymentRefunded(order_id=command.order_id, amount_cents=0)
    if row["state"] != "charged":
        return m.PaymentRefunded(
            order_id=command.order_id, amount_cents=row["amount_cents"] if row["state"] == "refunded" else 0
        )
    last4 = conn.execute(
        "SELECT card_last4 FROM ledger WHERE order_id = ? AND kind = 'charge'", (command.order_id,)
    ).fetchone()["card_last4"]
    conn.execute(
        "INSERT INTO ledger (order_id, kind, amount_cents, card_last4, at) VALUES (?, 'refund', ?, ?, ?)",
        (command.order_id, row["amount_cents"], last4, now),
    )
    conn.execute("UPDATE payments SET state = 'refunded', updated_at = ? WHERE order_id = ?", (now, command.order_id))
    return m.PaymentRefunded(order_id=command.order_id, amount_cents=row["amount_cents"])


def handle_command(conn: sqlite3.Connection, delivery: Delivery, now: float) -> list[m.Message]:
    match delivery.message:
        case m.ChargePayment() as command:
            return [_charge(conn, command, now)]
        case m.RefundPayment() as command:
            return [_refund(conn, command, now)]
    raise InvalidInput(f"payments cannot handle {m.kind_of(delivery.message)}")


async def run(settings: Settings, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    db = open_database(settings.data_dir, "payments", SCHEMA)
    try:
        async with (
            mom_link(settings) as link,
            trio.open_nursery() as nursery,
        ):
            source = Source(queue=t.PAYMENTS_COMMANDS)
            await nursery.start(Consumer(link, db, source, handle_command, m.PaymentsCommand, settings.name).run)
            task_status.started()
    finally:
        db.close()
