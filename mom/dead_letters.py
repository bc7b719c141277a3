"""Hands dead letters from a queue's group to its dead-letter queue's group, wherever that one is led.

Each letter carries a dedup id derived from its place in the source's outbox, so a resend after a crash or a
leadership change is a no-op at the dead-letter queue: a letter arrives once, and is removed from the outbox only
after the dead-letter queue answered that it is durable.
"""

from __future__ import annotations

import base64
from typing import Any

import httpx
import msgspec

from mom.api.auth import TokenService
from mom.api.auth.node_bearer import NodeBearer
from mom.api.forward import HOPS_HEADER, Forwarder, ForwardRequired
from mom.broker.commands import NewMessage, Publish, Published, QueueRef
from mom.errors import MomError, Unavailable, class_for
from mom.service import BrokerService, MetadataBehind


def _wire(message: NewMessage) -> dict[str, Any]:
    body: dict[str, Any] = (
        {"body_base64": base64.b64encode(message.body).decode()}
        if message.binary
        else {"body": msgspec.Raw(message.body)}
    )
    return {**body, "headers": message.headers, "dedup_id": message.dedup_id, "group_id": message.group_id}


class DeadLetterSender:
    """Publishes to a queue on its leader: directly when that is this node, else over the leader's REST API."""

    def __init__(
        self,
        service: BrokerService,
        tokens: TokenService,
        forwarder: Forwarder,
        node_id: str,
    ) -> None:
        self._service = service
        self._forwarder = forwarder
        self._node_id = node_id
        self._bearer = NodeBearer(tokens, node_id)

    async def __call__(self, queue: str, messages: list[NewMessage]) -> None:
        """Publish `messages` to `queue`; QueueFull or NotFound when it refuses them, another MomError (a 503,
        bounded in time like every call to a leader) when it cannot answer now."""
        ref = QueueRef(queue)
        try:
            located = self._service.locate(ref)
        except MetadataBehind as behind:  # the metadata leader knows whether the queue exists
            targets = [behind.meta_leader] if behind.meta_leader is not None else []
        else:
            if located.here is not None:
                await self._service.submit(located.here, Publish(ref, messages), Published)
                return
            replicas = [n for n in located.placement.replicas if n != self._node_id]
            targets = [located.leader, *replicas] if located.leader is not None else replicas
        if not targets:
            raise Unavailable(f"dead-letter queue {queue} has no leader yet")
        answer = await self._forwarder.call(
            ForwardRequired(targets),
            "POST",
            f"/v1/queues/{queue}/messages",
            content=msgspec.json.encode({"messages": [_wire(m) for m in messages]}),
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {self._bearer(self._service.now_ms() / 1000)}",
                HOPS_HEADER: "1",
            },
        )
        if answer.status_code != 201:
            raise _refusal(queue, answer)


def _refusal(queue: str, answer: httpx.Response) -> MomError:
    """The error the dead-letter queue's leader answered (QueueFull, NotFound, a 503, ...)."""
    try:
        problem = msgspec.json.decode(answer.content, type=dict[str, Any])
    except msgspec.MsgspecError:
        problem = {}
    error = class_for(answer.status_code, problem.get("type"))(
        f"dead-letter queue {queue}: {problem.get('detail') or answer.reason_phrase}"
    )
    error.status = answer.status_code
    return error
