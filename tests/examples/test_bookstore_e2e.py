"""The shop end to end, started the way a reader starts it: `python -m examples.bookstore up` (a 3-node mom
cluster over the default transport and every service, as real processes), then used over the gateway's HTTP API:
register, log in, list books, buy. SIGTERM must stop every process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.examples.bookstore_harness import DECLINED_CARD, REPO, Shopper, free_ports, wait_for

READY_TIMEOUT_S = 120.0
MASTER_AND_MARGARITA = 3
"""A seeded book with 4 copies."""


@dataclass
class RunningShop:
    gateway_url: str
    mom_urls: list[str]
    data_dir: Path
    log: Path

    def ledger(self, order_id: str) -> list[tuple[str, int]]:
        import sqlite3

        with sqlite3.connect(f"file:{self.data_dir / 'services' / 'payments.sqlite3'}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT kind, amount_cents FROM ledger WHERE order_id = ? ORDER BY id", (order_id,))
            return [(str(kind), int(amount)) for kind, amount in rows]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningShop]:
    directory = tmp_path_factory.mktemp("bookstore")
    mom, replication, services, gateway = free_ports(3), free_ports(3), free_ports(4), free_ports(1)
    command = [sys.executable, "-m", "examples.bookstore", "up", "--data-dir", str(directory / "shop"),
               "--port", str(gateway), "--service-port", str(services),
               "--mom-port", str(mom), "--mom-replication-port", str(replication)]  # fmt: skip
    log_path = directory / "up.log"
    env = {key: value for key, value in os.environ.items() if key != "MOM_ADMIN_PASSWORD"}
    with log_path.open("wb") as log:
        # A session of its own: if the fixture fails half-way, killing the group stops the nodes and services
        # `up` started too, not only `up` (they were left running, orphaned).
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    running = RunningShop(
        f"http://127.0.0.1:{gateway}", [f"http://127.0.0.1:{mom + i}" for i in range(3)], directory / "shop", log_path
    )
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while "[bookstore] ready:" not in log_path.read_text(errors="replace"):
            assert process.poll() is None, log_path.read_text(errors="replace")[-5000:]
            assert time.monotonic() < deadline, log_path.read_text(errors="replace")[-5000:]
            time.sleep(0.2)
        yield running
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0, log_path.read_text(errors="replace")[-5000:]
        for url in [running.gateway_url, *running.mom_urls]:
            with pytest.raises(httpx.TransportError):
                httpx.get(url + "/healthz", timeout=1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever of the group is left, `up` included
        process.wait(10)


def test_a_purchase_ships_and_takes_one_copy_off_the_shelf(shop: RunningShop) -> None:
    alice = Shopper(shop.gateway_url, "alice")
    before = alice.books()[MASTER_AND_MARGARITA]
    assert before["stock"] == 4 and before["seller"] == "bookstore"

    order = alice.wait_final(alice.buy(MASTER_AND_MARGARITA))

    assert order["status"] == "shipped" and order["tracking"].startswith("BK")
    steps = [step["status"] for step in order["history"]]
    assert steps == ["reserving", "charging", "shipping", "shipped"]
    assert alice.books()[MASTER_AND_MARGARITA]["stock"] == before["stock"] - 1
    wait_for(lambda: alice.books()[MASTER_AND_MARGARITA]["sold"] == 1, 20, "the catalog counting the sale")
    assert shop.ledger(order["order_id"]) == [("charge", before["price_cents"])]


def test_a_declined_payment_cancels_the_order_and_restores_the_stock(shop: RunningShop) -> None:
    bob = Shopper(shop.gateway_url, "bob")
    before = bob.books()[MASTER_AND_MARGARITA]["stock"]

    order = bob.wait_final(bob.buy(MASTER_AND_MARGARITA, card=DECLINED_CARD))

    assert order["status"] == "cancelled" and "payment declined" in order["reason"]
    assert [step["status"] for step in order["history"]] == ["reserving", "charging", "compensating", "cancelled"]
    assert bob.books()[MASTER_AND_MARGARITA]["stock"] == before
    assert shop.ledger(order["order_id"]) == []


def test_a_failed_shipment_refunds_the_payment_and_restores_the_stock(shop: RunningShop) -> None:
    carol = Shopper(shop.gateway_url, "carol")
    before = carol.books()[MASTER_AND_MARGARITA]

    order = carol.wait_final(carol.buy(MASTER_AND_MARGARITA, address="1 Coral Street, Atlantis"))

    assert order["status"] == "cancelled" and "shipment failed" in order["reason"]
    assert carol.books()[MASTER_AND_MARGARITA]["stock"] == before["stock"]
    price = before["price_cents"]
    assert shop.ledger(order["order_id"]) == [("charge", price), ("refund", price)]


def test_a_seller_sees_the_sale_and_an_empty_shelf_refuses_the_next_buyer(shop: RunningShop) -> None:
    dora, erin = Shopper(shop.gateway_url, "dora"), Shopper(shop.gateway_url, "erin")
    book = dora.sell("Dora's only copy", stock=1, price_cents=450)
    assert book["seller"] == "dora" and book["stock"] == 1

    first = erin.wait_final(erin.buy(book["id"]))
    second = erin.wait_final(erin.buy(book["id"]))

    assert first["status"] == "shipped"
    assert second["status"] == "cancelled" and second["reason"] == "stock: out of stock"

    def sales() -> list[dict[str, object]]:
        answer = dora.http.get("/api/sales")
        assert answer.status_code == 200
        return list(answer.json()["sales"])

    wait_for(lambda: len(sales()) == 2, 20, "both orders in the seller's view")
    assert sorted(str(sale["status"]) for sale in sales()) == ["cancelled", "shipped"]


def test_a_retried_purchase_with_the_same_idempotency_key_is_one_order(shop: RunningShop) -> None:
    frank = Shopper(shop.gateway_url, "frank")
    first = frank.buy(MASTER_AND_MARGARITA, key="frank-order-0001")
    again = frank.buy(MASTER_AND_MARGARITA, key="frank-order-0001")
    assert first == again
    frank.wait_final(first)
    mine = frank.http.get("/api/orders").json()["orders"]
    assert [o["order_id"] for o in mine] == [first]


def test_bad_requests_get_a_problem_and_change_nothing(shop: RunningShop) -> None:
    grace = Shopper(shop.gateway_url, "grace")
    stock = {book_id: book["stock"] for book_id, book in grace.books().items()}
    anonymous = httpx.post(shop.gateway_url + "/api/orders", json={"book_id": 1, "card": "4242424242424242"})
    assert anonymous.status_code == 401
    for body in ({"book_id": 1}, {"book_id": "one", "card": "4242424242424242", "address": "here"},
                 {"book_id": 1, "card": "not-a-card", "address": "here"}):  # fmt: skip
        answer = grace.http.post("/api/orders", json=body)
        assert answer.status_code == 400, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    assert grace.http.post("/api/orders", content=b"{not json").status_code == 400
    assert grace.http.post("/api/orders", json={"book_id": 1, "card": "4242424242424242", "address": "here"},
                           headers={"Idempotency-Key": "bad key!"}).status_code == 400  # fmt: skip
    assert (
        grace.http.post("/api/register", json={"username": "grace", "password": "correct-horse-battery"}).status_code
        == 409
    )
    assert grace.http.get("/api/orders/nope").status_code == 404
    assert grace.http.get("/api/orders").json()["orders"] == []
    assert {book_id: book["stock"] for book_id, book in grace.books().items()} == stock
