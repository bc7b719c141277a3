"""Following a destination's leadership while a request waits, rather than answering 503 at every change.

Leadership moves for ordinary reasons: a leader dies and its replicas elect another (about a second), leadership
returns to a destination's preferred replica after a restart (a transfer: a round trip), a new leader catches up
before it serves (a round trip). A request that meets one of these moments is handled here, once per request:

- `ForwardRequired`: forwarded to the first candidate that can be reached (`mom.api.forward`). If none can (a dead
  leader this node still believes in), the node waits up to `LEADER_WAIT_S` to learn of another leader, then
  handles the request again from the start.
- `LeadershipMoved` (this node led the group when the request arrived, and stopped before writing anything): sent
  on to the new leader; if none is known yet, the node waits for one as above.
- `LeaderPending` (an election under way, or this node's new leadership not yet ready): the node waits for a
  leader as above and handles the request again.

Handling again is safe because each of these is raised before anything was written. A second wait is not: after
one, the 503 goes to the client, with Retry-After, as before. The whole stays within the forwarding bound of a
node that forwarded the request here.

Every answer about a destination that this node served names the group, this node and its term in
`X-Mom-Leader`, so the nodes that relayed it learn where the group is led.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from quart import Response, g
from quart.typing import ResponseReturnValue, ResponseTypes
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from mom.api.context import ApiContext, ForwardRequired, LeaderPending, served
from mom.api.errors import problem_from
from mom.api.forward import LEADER_HEADER, NotReached, leader_header
from mom.errors import MomError
from mom.service import LeadershipMoved

LEADER_WAIT_S = 2.0
"""Longest wait for a leader before a 503: an election after a leader's death takes 0.5 to 1 s from the last
heartbeat, and a hand-over or a new leader's first commit a round trip."""


def install(app: QuartTrio, context: ApiContext) -> None:
    async def handle_again() -> ResponseTypes:
        result: ResponseReturnValue | HTTPException
        try:
            result = await app.dispatch_request()
        except Exception as error:  # the handlers below (or the MomError one) answer it, as the first time
            result = await app.handle_user_exception(error)
        return await app.make_response(result)

    async def wait_then_handle_again(
        error: MomError, unless: Sequence[str] = (), wait_s: float = LEADER_WAIT_S
    ) -> ResponseTypes:
        about = served()
        if about is None or g.get("mom_waited"):
            return problem_from(error)
        g.mom_waited = True
        if not await context.service.wait_for_leader(about.ref, timeout_s=wait_s, unless=unless):
            return problem_from(error)
        g.pop("mom_served", None)
        return await handle_again()

    @app.errorhandler(ForwardRequired)
    async def _forward(exc: ForwardRequired) -> ResponseTypes:
        try:
            return await context.forwarder.forward(exc)
        except NotReached as error:
            return await wait_then_handle_again(error, unless=exc.targets)
        except MomError as error:  # raised inside an error handler: no other handler would see it
            return problem_from(error)

    @app.errorhandler(LeadershipMoved)
    async def _follow(exc: LeadershipMoved) -> ResponseTypes:
        about = served()
        if exc.leader is None or about is None:
            return await wait_then_handle_again(exc)
        g.mom_served = dataclasses.replace(about, leader=None)  # not served here after all: no header of ours
        return await _forward(ForwardRequired([exc.leader], wait_s=about.wait_s))

    @app.errorhandler(LeaderPending)
    async def _pending(exc: LeaderPending) -> ResponseTypes:
        wait_s = LEADER_WAIT_S if exc.wait_s is None else exc.wait_s
        return await wait_then_handle_again(exc, unless=exc.unless, wait_s=wait_s)

    @app.after_request
    async def _name_the_leader(response: Response) -> Response:
        about = served()
        if about is not None and about.group and about.leader and LEADER_HEADER not in response.headers:
            response.headers[LEADER_HEADER] = leader_header(about.group, about.leader, about.term)
        return response
