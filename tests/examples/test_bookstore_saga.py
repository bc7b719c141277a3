"""The bookstore's logic without processes: the saga's steps, and the consume loop's promises (idempotent
handling, ack only after commit and publish, nack of what cannot be handled) on real SQLite databases."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from examples.bookstore import messages as m
from examples.bookstore import saga
from examples.bookstore import topology as t
from examples.bookstore.consumer import Consumer, Source
from examples.bookstore.db import Database
from examples.bookstore.services import catalog, orders, payments
from mom.errors import Unavailable

GOOD, DECLINED = "4242424242424242", "4000000000000002"


def _place(card: str = GOOD, address: str = "1 Lane") -> saga.Step:
    return saga.place(m.PlaceOrder(order_id="o1", user="u", book_id=7, quantity=2, card=card, address=address))


def _run(step: saga.Step, *events: m.Message) -> list[saga.Step]:
    steps = [step]
    for event in events:
        following = saga.on_event(steps[-1].order, event)
        assert following is not None, f"{m.kind_of(event)} did not apply in {steps[-1].order.status}"
        steps.append(following)
    return steps


def test_the_happy_path_reserves_charges_ships_and_announces() -> None:
    steps = _run(
        _place(),
        m.StockReserved(order_id="o1", amount_cents=2400),
        m.PaymentCharged(order_id="o1", amount_cents=2400),
        m.ParcelShipped(order_id="o1", tracking="BK1"),
    )
    assert [s.order.status for s in steps] == ["reserving", "charging", "shipping", "shipped"]
    sent = [type(message) for s in steps for message in s.send]
    assert sent == [m.ReserveStock, m.ChargePayment, m.ShipOrder, m.OrderShipped]
    assert steps[1].send == [m.ChargePayment(order_id="o1", amount_cents=2400, card=GOOD)]
    assert steps[-1].order.card == "", "the card number is forgotten once the payment settled"


def test_a_declined_payment_releases_the_stock_before_the_order_is_cancelled() -> None:
    steps = _run(
        _place(),
        m.StockReserved(order_id="o1", amount_cents=2400),
        m.PaymentDeclined(order_id="o1", reason="no"),
    )
    assert steps[-1].order.status == "compensating" and steps[-1].send == [m.ReleaseStock(order_id="o1")]
    done = saga.on_event(steps[-1].order, m.StockReleased(order_id="o1"))
    assert done is not None and done.order.status == "cancelled"
    assert done.send == [m.OrderCancelled(order_id="o1", book_id=7, quantity=2, reason="payment declined: no")]


@pytest.mark.parametrize("first", [m.StockReleased(order_id="o1"), m.PaymentRefunded(order_id="o1", amount_cents=1)])
def test_a_failed_shipment_waits_for_both_compensations_in_any_order(first: m.Message) -> None:
    steps = _run(
        _place(),
        m.StockReserved(order_id="o1", amount_cents=2400),
        m.PaymentCharged(order_id="o1", amount_cents=2400),
        m.ShipmentFailed(order_id="o1", reason="sea"),
    )
    assert set(steps[-1].send) == {m.ReleaseStock(order_id="o1"), m.RefundPayment(order_id="o1")}
    half = saga.on_event(steps[-1].order, first)
    assert half is not None and half.order.status == "compensating" and half.send == []
    assert saga.on_event(half.order, first) is None, "a repeated confirmation changes nothing"
    second = (
        m.PaymentRefunded(order_id="o1", amount_cents=1)
        if isinstance(first, m.StockReleased)
        else m.StockReleased(order_id="o1")
    )
    done = saga.on_event(half.order, second)
    assert done is not None and done.order.status == "cancelled"


def test_events_that_do_not_fit_the_state_change_nothing() -> None:
    charging = _run(_place(), m.StockReserved(order_id="o1", amount_cents=1))[-1].order
    assert saga.on_event(charging, m.StockReserved(order_id="o1", amount_cents=1)) is None
    assert saga.on_event(charging, m.ParcelShipped(order_id="o1", tracking="x")) is None
    assert saga.on_event(charging, m.StockReleased(order_id="o1")) is None
    rejected = saga.on_event(_place().order, m.StockRejected(order_id="o1", reason="out of stock"))
    assert rejected is not None and rejected.order.status == "cancelled"
    assert saga.on_event(rejected.order, m.StockReserved(order_id="o1", amount_cents=1)) is None


def test_a_dead_command_is_a_failed_step_and_compensation_runs() -> None:
    reserving = _place().order
    dead = saga.on_dead_letter(reserving, m.ReserveStock(order_id="o1", book_id=7, quantity=2), "q.dlq")
    assert dead is not None and dead.order.status == "compensating" and dead.send == [m.ReleaseStock(order_id="o1")]
    charging = _run(_place(), m.StockReserved(order_id="o1", amount_cents=1))[-1].order
    dead = saga.on_dead_letter(charging, m.ChargePayment(order_id="o1", amount_cents=1, card=GOOD), "q.dlq")
    assert dead is not None and dead.order.awaiting == {"release", "refund"}
    late = saga.on_dead_letter(charging, m.ReserveStock(order_id="o1", book_id=7, quantity=2), "q.dlq")
    assert late is None, "a dead command of a step already passed changes nothing"
    place = m.PlaceOrder(order_id="o9", user="u", book_id=1, quantity=1, card=GOOD, address="a")
    never = saga.on_dead_letter(None, place, "q.dlq")
    assert never is not None and never.order.status == "cancelled" and isinstance(never.send[0], m.OrderCancelled)


# -- the consume loop, on real databases


class FakeLink:
    """Stands in for mom: hands out given deliveries, records what the consumer publishes, acks and nacks."""

    def __init__(self, deliveries: list[dict[str, Any]]) -> None:
        self.deliveries = deliveries
        self.published: list[m.Message] = []
        self.acked: list[str] = []
        self.nacked: list[str] = []
        self.log: list[str] = []
        self.publish_fails = False

    async def receive(self, where: dict[str, str], *, max_messages: int, wait_s: float) -> list[dict[str, Any]]:
        batch, self.deliveries = self.deliveries[:max_messages], self.deliveries[max_messages:]
        return batch

    async def publish(self, messages: Sequence[m.Message]) -> None:
        if self.publish_fails:
            raise Unavailable("no leader")
        self.published += messages
        self.log.append("publish")

    async def ack(self, where: dict[str, str], receipts: Sequence[str]) -> None:
        self.acked += receipts
        self.log.append("ack")

    async def nack(self, where: dict[str, str], receipts: Sequence[str], *, delay_s: float) -> None:
        self.nacked += receipts


def _delivery(body: Any, receipt: str, deliveries: int = 1) -> dict[str, Any]:
    return {"id": f"id-{receipt}", "body": body, "headers": {}, "receipt": receipt, "deliveries": deliveries}


def _payments(tmp_path: Path, link: FakeLink) -> tuple[Consumer, Database]:
    db = Database(tmp_path / "payments.sqlite3", payments.SCHEMA)
    source = Source(queue=t.PAYMENTS_COMMANDS)
    return Consumer(link, db, source, payments.handle_command, m.PaymentsCommand, "payments-1"), db


def _ledger(db: Database) -> list[tuple[str, str]]:
    with sqlite3.connect(db.path) as conn:
        return [(str(a), str(b)) for a, b in conn.execute("SELECT order_id, kind FROM ledger ORDER BY id")]


async def test_a_redelivered_charge_moves_no_money_and_sends_the_same_answer(tmp_path: Path) -> None:
    charge = m.encode(m.ChargePayment(order_id="o1", amount_cents=500, card=GOOD))
    link = FakeLink([_delivery(charge, "r1"), _delivery(charge, "r2", deliveries=2)])
    consumer, db = _payments(tmp_path, link)
    assert await consumer.step() == 2
    assert _ledger(db) == [("o1", "charge")]
    assert link.published == [m.PaymentCharged(order_id="o1", amount_cents=500)] * 2
    assert link.acked == ["r1", "r2"] and link.log == ["publish", "ack"]


async def test_nothing_is_acked_until_what_it_produced_is_published(tmp_path: Path) -> None:
    charge = m.encode(m.ChargePayment(order_id="o2", amount_cents=500, card=GOOD))
    link = FakeLink([_delivery(charge, "r1")])
    consumer, db = _payments(tmp_path, link)
    link.publish_fails = True
    with pytest.raises(Unavailable):
        await consumer.step()
    assert link.acked == [] and link.nacked == [], "left for redelivery after the visibility timeout"
    assert _ledger(db) == [("o2", "charge")], "the effect is committed"
    link.publish_fails = False
    link.deliveries = [_delivery(charge, "r1-again", deliveries=2)]
    await consumer.step()
    assert _ledger(db) == [("o2", "charge")] and link.published == [m.PaymentCharged(order_id="o2", amount_cents=500)]
    assert link.acked == ["r1-again"]


async def test_what_cannot_be_handled_is_nacked_and_not_recorded(tmp_path: Path) -> None:
    link = FakeLink([_delivery({"type": "charge-payment"}, "bad"), _delivery("not an object", "worse"),
                     _delivery(m.encode(m.ShipOrder(order_id="o3", address="x")), "wrong-queue")])  # fmt: skip
    consumer, db = _payments(tmp_path, link)
    assert await consumer.step() == 0
    assert link.nacked == ["bad", "worse", "wrong-queue"] and link.acked == []
    with sqlite3.connect(db.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM processed").fetchone()[0] == 0


async def test_a_refund_that_overtakes_its_charge_voids_the_order(tmp_path: Path) -> None:
    link = FakeLink([
        _delivery(m.encode(m.RefundPayment(order_id="o4")), "r1"),
        _delivery(m.encode(m.ChargePayment(order_id="o4", amount_cents=500, card=GOOD)), "r2"),
    ])  # fmt: skip
    consumer, db = _payments(tmp_path, link)
    await consumer.step()
    assert _ledger(db) == []
    assert link.published[1] == m.PaymentDeclined(order_id="o4", reason="the payment was voided")


async def test_payments_refuse_bad_and_declined_cards(tmp_path: Path) -> None:
    link = FakeLink([
        _delivery(m.encode(m.ChargePayment(order_id="o5", amount_cents=1, card=DECLINED)), "r1"),
        _delivery(m.encode(m.ChargePayment(order_id="o6", amount_cents=1, card="4242424242424241")), "r2"),
    ])  # fmt: skip
    consumer, db = _payments(tmp_path, link)
    await consumer.step()
    assert [type(p) for p in link.published] == [m.PaymentDeclined, m.PaymentDeclined]
    assert _ledger(db) == []


async def test_catalog_keeps_stock_exact_through_releases_and_late_reservations(tmp_path: Path) -> None:
    db = Database(tmp_path / "catalog.sqlite3", catalog.SCHEMA)
    await db.write(lambda conn: catalog.seed(conn, 0.0))
    link = FakeLink([
        _delivery(m.encode(m.ReserveStock(order_id="a", book_id=2, quantity=2)), "1"),
        _delivery(m.encode(m.ReserveStock(order_id="b", book_id=2, quantity=1)), "2"),  # only 2 copies
        _delivery(m.encode(m.ReleaseStock(order_id="a")), "3"),
        _delivery(m.encode(m.ReleaseStock(order_id="c")), "4"),  # overtakes its reservation
        _delivery(m.encode(m.ReserveStock(order_id="c", book_id=2, quantity=1)), "5"),
    ])  # fmt: skip
    consumer = Consumer(link, db, Source(queue=t.CATALOG_COMMANDS), catalog.handle_command, m.CatalogCommand, "c-1")
    await consumer.step()
    assert [m.kind_of(p) for p in link.published] == [
        "stock-reserved", "stock-rejected", "stock-released", "stock-released", "stock-rejected",
    ]  # fmt: skip
    stock = await db.read(lambda conn: conn.execute("SELECT stock FROM books WHERE id = 2").fetchone()[0])
    assert stock == catalog.SEED[1][3]


async def test_a_dead_letter_is_handled_apart_from_the_command_it_carries(tmp_path: Path) -> None:
    db = Database(tmp_path / "orders.sqlite3", orders.SCHEMA)
    place = m.PlaceOrder(order_id="o7", user="u", book_id=1, quantity=1, card=GOOD, address="a")
    reserve = m.ReserveStock(order_id="o7", book_id=1, quantity=1)
    link = FakeLink([_delivery(m.encode(place), "1")])
    await Consumer(link, db, Source(queue=t.ORDERS_COMMANDS), orders.handle_place, m.OrdersCommand, "o-1").step()
    dead = _delivery(m.encode(reserve), "2")
    dead["headers"] = {"x-death": {"queue": t.CATALOG_COMMANDS, "reason": "max-deliveries", "message_id": "x"}}
    link.deliveries = [dead]
    watcher = Consumer(link, db, Source(queue="dlq"), orders.handle_dead_letter, m.AnyMessage, "o-1", "dead:")
    await watcher.step()
    assert link.published == [reserve, m.ReleaseStock(order_id="o7")]
    status = await db.read(lambda conn: orders.load(conn, "o7"))
    assert status is not None and status.status == "compensating"


def test_a_body_that_is_no_message_does_not_decode() -> None:
    with pytest.raises(Exception, match="order_id"):
        m.decode({"type": "reserve-stock", "book_id": 1, "quantity": 1}, m.CatalogCommand)


async def test_a_dead_letter_with_nothing_to_undo_is_only_noted(tmp_path: Path) -> None:
    db = Database(tmp_path / "orders.sqlite3", orders.SCHEMA)
    place = m.PlaceOrder(order_id="o8", user="u", book_id=1, quantity=1, card=GOOD, address="a")
    link = FakeLink([_delivery(m.encode(place), "1")])
    await Consumer(link, db, Source(queue=t.ORDERS_COMMANDS), orders.handle_place, m.OrdersCommand, "o-1").step()
    dead = _delivery(m.encode(m.ShipOrder(order_id="o8", address="a")), "2")  # a step the order never reached
    dead["headers"] = {"x-death": {"queue": t.SHIPPING_COMMANDS, "reason": "max-deliveries", "message_id": "x"}}
    link.deliveries, link.published = [dead], []
    watcher = Consumer(link, db, Source(queue="dlq"), orders.handle_dead_letter, m.AnyMessage, "o-1", "dead:")
    await watcher.step()
    assert link.published == [] and link.acked == ["1", "2"]
    history = await db.read(lambda c: c.execute("SELECT status FROM history WHERE order_id = 'o8'").fetchall())
    assert [row["status"] for row in history] == ["reserving", "dead-letter"]
