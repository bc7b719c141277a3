"""Records a finished replica move on the metadata leader, wherever it is: the group's leader that carried out the
move calls it (mom.service.mover). Like dead letters, over the leader's REST API with a node-issued admin token
when the metadata leader is another node."""

from __future__ import annotations

import msgspec

from mom.api.auth import TokenService
from mom.api.auth.node_bearer import NodeBearer
from mom.api.forward import HOPS_HEADER, Forwarder, ForwardRequired
from mom.broker.commands import FinishMove
from mom.errors import Unavailable
from mom.service import BrokerService, Handle


class MoveRecorder:
    def __init__(self, service: BrokerService, tokens: TokenService, forwarder: Forwarder, node_id: str) -> None:
        self._service = service
        self._forwarder = forwarder
        self._node_id = node_id
        self._bearer = NodeBearer(tokens, node_id)

    async def __call__(self, command: FinishMove) -> None:
        meta = self._service.locate_meta()
        if isinstance(meta, Handle):
            await self._service.submit(meta, command)
            return
        if meta is None:
            raise Unavailable("the cluster metadata has no leader at the moment")
        move = command.move
        body = {"group": move.group, "source": move.source, "target": move.target, "replicas": command.replicas}
        answer = await self._forwarder.call(
            ForwardRequired([meta]),
            "POST",
            "/v1/cluster/moves",
            content=msgspec.json.encode(body),
            headers={
                "content-type": "application/json",
                "authorization": f"Bearer {self._bearer(self._service.now_ms() / 1000)}",
                HOPS_HEADER: "1",
            },
        )
        if answer.status_code != 200:
            raise Unavailable(f"the metadata leader {meta} did not record the move: {answer.status_code}")
