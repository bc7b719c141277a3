"""The bookstore keeps its books straight through failures: while 200 orders are being placed, the mom node
leading the orders queue is killed with -9 and restarted, and one orders instance is killed for good.

Every order must end in exactly one final state, stock must be neither lost nor counted twice, no payment may be
charged twice, and no parcel sent twice. Runs once per transport.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from examples.bookstore import topology
from tests.examples.bookstore_harness import DECLINED_CARD, GOOD_CARD, Services, Shopper, wait_for
from tests.integration.harness import ADMIN_PASSWORD, Cluster

pytestmark = pytest.mark.transport

ORDERS = 200
SHOPPERS = 8
KILL_AFTER = 50
"""Orders accepted before the faults: the rest are placed while a node and an instance are down."""
RESTART_AFTER_S = 2.0
SETTLE_TIMEOUT_S = 120.0
PLENTY, SCARCE = 120, 20


@pytest.fixture
def shop(tmp_path: Path) -> Iterator[tuple[Cluster, Services]]:
    cluster = Cluster(tmp_path / "mom").start()
    services = Services(tmp_path / "shop", tuple(n.url for n in cluster.nodes.values()), ADMIN_PASSWORD)
    try:
        services.provision()
        services.start()
        yield cluster, services
    finally:
        services.kill_all()
        cluster.kill_all()


def _order_mix(i: int, plenty: int, scarce: int) -> tuple[int, str, str]:
    """Book, card and address of order i: mostly good purchases, some declined, some to Atlantis."""
    book = scarce if i % 4 == 3 else plenty
    card = DECLINED_CARD if i % 10 == 0 else GOOD_CARD
    address = "7 Sunken Road, Atlantis" if i % 10 == 5 else f"{i} Library Lane"
    return book, card, address


def test_orders_settle_exactly_once_through_a_dead_broker_node_and_a_dead_instance(
    shop: tuple[Cluster, Services],
) -> None:
    cluster, services = shop
    seller = Shopper(services.gateway_url, "seller")
    plenty = seller.sell("Plenty of copies", PLENTY, price_cents=1000)["id"]
    scarce = seller.sell("Few copies", SCARCE, price_cents=500)["id"]
    shoppers = [Shopper(services.gateway_url, f"buyer{n}") for n in range(SHOPPERS)]
    local = threading.local()
    counter = iter(range(SHOPPERS))
    lock = threading.Lock()

    def place(i: int) -> str:
        if not hasattr(local, "shopper"):
            with lock:
                local.shopper = shoppers[next(counter)]
        book, card, address = _order_mix(i, plenty, scarce)
        return local.shopper.buy(book, card, address, key=f"fault-order-{i:04d}")

    with ThreadPoolExecutor(SHOPPERS) as pool:
        futures: list[Future[str]] = [pool.submit(place, i) for i in range(ORDERS)]
        wait_for(lambda: sum(f.done() for f in futures) >= KILL_AFTER, 60, f"{KILL_AFTER} orders accepted", 0.02)
        leader = cluster.leader_of(topology.ORDERS_COMMANDS)
        assert leader is not None
        cluster.nodes[leader].kill()
        services.processes["orders-1"].kill()
        accepted_at_kill = sum(f.done() for f in futures)
        time.sleep(RESTART_AFTER_S)
        cluster.nodes[leader].start()
        placed = [f.result(timeout=120) for f in futures]
    assert accepted_at_kill < ORDERS, "the faults came after every order was placed: the test proves nothing"
    assert len(set(placed)) == ORDERS

    def settled() -> bool:
        final = services.rows("orders", "SELECT COUNT(*) FROM orders WHERE status IN ('shipped', 'cancelled')")
        seen = services.rows("catalog", "SELECT COUNT(*) FROM order_view")
        return bool(final[0][0] == ORDERS and seen[0][0] == ORDERS)

    wait_for(settled, SETTLE_TIMEOUT_S, "every order final, and the catalog told", 0.5)
    doomed = {oid for i, oid in enumerate(placed) if i % 10 in (0, 5)}  # declined card, or Atlantis
    _check_books(services, placed, doomed, {plenty: PLENTY, scarce: SCARCE})
    _check_competing_consumers(services)


def _check_books(services: Services, placed: list[str], doomed: set[str], initial_stock: dict[int, int]) -> None:
    orders = {row["order_id"]: row for row in services.rows("orders", "SELECT * FROM orders")}
    assert set(orders) == set(placed), "an order was lost or invented"

    finals = Counter(
        row["order_id"]
        for row in services.rows("orders", "SELECT order_id FROM history WHERE status IN ('shipped', 'cancelled')")
    )
    assert set(finals.values()) == {1}, "an order reached a final state more than once"
    shipped = {oid for oid, row in orders.items() if row["status"] == "shipped"}
    assert shipped, "no order shipped at all"
    assert not shipped & doomed, "an order with a declined card or to Atlantis shipped"

    # stock: what left the shelf is exactly what shipped
    books = {row["id"]: row for row in services.rows("catalog", "SELECT * FROM books")}
    for book_id, initial in initial_stock.items():
        sold = sum(orders[oid]["quantity"] for oid in shipped if orders[oid]["book_id"] == book_id)
        assert books[book_id]["stock"] == initial - sold, f"book {book_id}: stock lost or double-counted"
        assert books[book_id]["sold"] == sold
    reservations = {row["order_id"]: row["state"] for row in services.rows("catalog", "SELECT * FROM reservations")}
    assert "reserved" not in reservations.values(), "a reservation was left hanging"
    assert {oid for oid, state in reservations.items() if state == "committed"} == shipped
    view = {row["order_id"]: row["status"] for row in services.rows("catalog", "SELECT * FROM order_view")}
    assert view == {oid: row["status"] for oid, row in orders.items()}, "the catalog's read model disagrees"

    # money: at most one charge and one refund per order, and only shipped orders keep their money
    ledger = services.rows("payments", "SELECT order_id, kind, amount_cents FROM ledger")
    movements = Counter((row["order_id"], row["kind"]) for row in ledger)
    assert max(movements.values()) == 1, "a payment was charged or refunded twice"
    net = Counter[str]()
    for row in ledger:
        net[row["order_id"]] += row["amount_cents"] if row["kind"] == "charge" else -row["amount_cents"]
    for oid, row in orders.items():
        expected = row["amount_cents"] if oid in shipped else 0
        assert net[oid] == expected, f"order {oid} ({row['status']}): net charge {net[oid]}, expected {expected}"

    # parcels: exactly one per shipped order, none for the others
    parcels = Counter(row["order_id"] for row in services.rows("shipping", "SELECT order_id FROM shipments"))
    assert set(parcels) == shipped and set(parcels.values()) == {1}


def _check_competing_consumers(services: Services) -> None:
    for service, instances in (("orders", {"orders-1", "orders-2"}), ("payments", {"payments-1", "payments-2"})):
        worked = {row["instance"] for row in services.rows(service, "SELECT DISTINCT instance FROM processed")}
        assert worked == instances, f"{service}: only {worked} took work"
