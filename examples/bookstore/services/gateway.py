"""gateway: the shop's only public entry point, a JSON API under /api and a plain HTML page at /.

Queries go over HTTP to the service that owns the data (auth, catalog, orders); placing an order is a command
published to mom (queue bookstore.orders.commands) and answered 202 at once, with the order's id to follow.
An `Idempotency-Key` header makes a retried purchase the same order: the order id is derived from it, and the
command's dedup id from the order id, so mom stores it once.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import httpx
import msgspec
import trio
from quart import Response, request
from quart_trio import QuartTrio

from examples.bookstore import messages as m
from examples.bookstore.config import Settings, mom_link
from examples.bookstore.momlink import MomLink
from examples.bookstore.web import create_app, json_body, json_response, serve
from mom.errors import InvalidInput, MomError, NotFound, Unauthorized, Unavailable

INTERNAL_TIMEOUT_S = 10.0
PUBLISH_GIVE_UP_S = 20.0
PAGE = Path(__file__).resolve().parent.parent / "static" / "index.html"
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_-]{8,64}")


class OrderRequest(msgspec.Struct, forbid_unknown_fields=True):
    book_id: Annotated[int, msgspec.Meta(ge=1)]
    card: Annotated[str, msgspec.Meta(pattern=r"^[0-9]{12,19}$", description="digits only")]
    address: Annotated[str, msgspec.Meta(min_length=3, max_length=300)]
    quantity: Annotated[int, msgspec.Meta(ge=1, le=10)] = 1


class BookRequest(msgspec.Struct, forbid_unknown_fields=True):
    title: str
    author: str
    price_cents: int
    stock: int


class Upstream:
    """The internal services' HTTP APIs; an answer from them (errors included) is relayed as it came."""

    def __init__(self, http: httpx.AsyncClient, auth: str, catalog: str, orders: Sequence[str]) -> None:
        self._http = http
        self._instances = {"auth": [auth], "catalog": [catalog], "orders": list(orders)}

    async def call(self, service: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Ask the first instance of `service` that answers; 503 if none does."""
        for base in self._instances[service]:
            try:
                return await self._http.request(method, base + path, **kwargs)
            except httpx.TransportError:
                continue
        raise Unavailable(f"the {service} service is unreachable; try again shortly")

    async def user_of(self, authorization: str | None) -> str:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("log in first: send 'Authorization: Bearer <token>' (POST /api/login)")
        answer = await self.call("auth", "GET", f"/sessions/{token.strip()}")
        if answer.status_code == 404:
            raise Unauthorized("the session expired or does not exist: log in again")
        if answer.is_error:
            raise Unavailable("the auth service failed; try again shortly")
        return str(answer.json()["username"])


def relay(answer: httpx.Response) -> Response:
    content_type = answer.headers.get("content-type", "application/json")
    return Response(answer.content, status=answer.status_code, content_type=content_type)


def order_id_for(user: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return uuid.uuid4().hex
    if not IDEMPOTENCY_KEY.fullmatch(idempotency_key):
        raise InvalidInput("Idempotency-Key must be 8 to 64 characters from [A-Za-z0-9_-]")
    return hashlib.sha256(f"{user}\n{idempotency_key}".encode()).hexdigest()[:32]


def build_app(up: Upstream, link: MomLink) -> QuartTrio:
    app = create_app("gateway")

    @app.get("/")
    async def page() -> Response:
        return Response(PAGE.read_bytes(), content_type="text/html; charset=utf-8")

    @app.post("/api/register")
    async def register() -> Response:
        return relay(await up.call("auth", "POST", "/users", content=await request.get_data()))

    @app.post("/api/login")
    async def login() -> Response:
        return relay(await up.call("auth", "POST", "/sessions", content=await request.get_data()))

    @app.post("/api/logout")
    async def logout() -> Response:
        await up.user_of(request.headers.get("Authorization"))
        token = request.headers["Authorization"].partition(" ")[2].strip()
        return relay(await up.call("auth", "DELETE", f"/sessions/{token}"))

    @app.get("/api/books")
    async def books() -> Response:
        return relay(await up.call("catalog", "GET", "/books"))

    @app.get("/api/books/<int:book_id>")
    async def book(book_id: int) -> Response:
        return relay(await up.call("catalog", "GET", f"/books/{book_id}"))

    @app.post("/api/books")
    async def sell_book() -> Response:
        user = await up.user_of(request.headers.get("Authorization"))
        new = await json_body(BookRequest)
        body = {**msgspec.to_builtins(new), "seller": user}
        return relay(await up.call("catalog", "POST", "/books", json=body))

    @app.get("/api/sales")
    async def sales() -> Response:
        user = await up.user_of(request.headers.get("Authorization"))
        return relay(await up.call("catalog", "GET", "/sales", params={"seller": user}))

    @app.post("/api/orders")
    async def place_order() -> Response:
        user = await up.user_of(request.headers.get("Authorization"))
        wanted = await json_body(OrderRequest)
        order_id = order_id_for(user, request.headers.get("Idempotency-Key"))
        command = m.PlaceOrder(
            order_id=order_id, user=user, book_id=wanted.book_id, quantity=wanted.quantity,
            card=wanted.card, address=wanted.address,
        )  # fmt: skip
        try:
            await link.publish([command])
        except (MomError, httpx.HTTPError) as exc:
            raise Unavailable(f"the order could not be queued ({exc}); retry with the same Idempotency-Key") from None
        return json_response({"order_id": order_id, "status": "placed", "href": f"/api/orders/{order_id}"}, 202)

    @app.get("/api/orders")
    async def my_orders() -> Response:
        user = await up.user_of(request.headers.get("Authorization"))
        return relay(await up.call("orders", "GET", "/orders", params={"user": user}))

    @app.get("/api/orders/<order_id>")
    async def my_order(order_id: str) -> Response:
        user = await up.user_of(request.headers.get("Authorization"))
        answer = await up.call("orders", "GET", f"/orders/{order_id}")
        if answer.status_code == 200 and answer.json().get("user") != user:
            raise NotFound(f"no order {order_id}")
        return relay(answer)

    return app


async def run(settings: Settings, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    assert settings.listen is not None
    async with (
        httpx.AsyncClient(timeout=INTERNAL_TIMEOUT_S) as http,
        mom_link(settings, give_up_after_s=PUBLISH_GIVE_UP_S) as link,
        trio.open_nursery() as nursery,
    ):
        upstream = Upstream(http, settings.auth_url, settings.catalog_url, settings.orders_urls)
        await nursery.start(serve, build_app(upstream, link), settings.listen)
        task_status.started()
