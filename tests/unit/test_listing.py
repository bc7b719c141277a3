"""A list that asks other nodes for the destinations it holds no replica of (mom.api.listing), on fakes: what
happens to the catalog while those nodes answer."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import httpx
from quart_trio import QuartTrio

from mom.api.listing import listed
from mom.broker.commands import QueueRef
from mom.errors import NotFound


@dataclass
class FakeService:
    """Three queues, none served here: `a` and `c` live on node n2, which answers a list; `b` is placed here, but
    its replica has not started yet (the list takes the catalog's view of it)."""

    node_id: str = "n1"
    placed: dict[str, str] = field(default_factory=lambda: {"a": "n2", "b": "n1", "c": "n2"})

    def serving_replica(self, ref: QueueRef) -> None:
        return None

    def whereabouts(self, ref: QueueRef) -> tuple[Any, str | None]:
        if ref.name not in self.placed:
            raise NotFound(f"queue {ref.name!r} not found")
        node = self.placed[ref.name]
        return SimpleNamespace(replicas=(node,)), node


class DeletingForwarder:
    """n2 answers its list; meanwhile the metadata log deleted queue `b` here."""

    def __init__(self, service: FakeService) -> None:
        self._service = service

    async def call(self, to: object, method: str, path: str, **_: object) -> httpx.Response:
        self._service.placed.pop("b", None)
        return httpx.Response(200, json={"queues": [{"name": "a", "messages": 5}, {"name": "c", "messages": 7}]})


def view_of(service: FakeService) -> Any:
    def view(name: str) -> dict[str, Any]:
        service.whereabouts(QueueRef(name))  # as the routes' views do: NotFound for a deleted destination
        return {"name": name, "messages": 0}

    return view


async def test_a_destination_deleted_while_other_nodes_answer_is_left_out_not_a_404() -> None:
    service = FakeService()
    app = QuartTrio("listing-test")
    app.extensions["mom"] = SimpleNamespace(service=service, forwarder=DeletingForwarder(service))
    async with app.test_request_context("/v1/queues"):
        entries = await listed("queues", ["a", "b", "c"], view_of(service))
    assert entries == [{"name": "a", "messages": 5}, {"name": "c", "messages": 7}]
