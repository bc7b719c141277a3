"""The admin's side of a chaos run: declare the workload's destinations, and afterwards ask what is left.

These go through `mom.client` like any client, to one node (which forwards), with an admin token.
"""

from __future__ import annotations

from typing import Any

import httpx
import trio

from mom.chaos.replicas import ReplicaLog
from mom.chaos.workload import QUEUE_REST, QUEUE_STREAM, SUBSCRIPTIONS, TOPIC, USER, VISIBILITY_TIMEOUT_S
from mom.client import AsyncClient
from mom.errors import Conflict, MomError

REPLAY_PAGE = 1000


async def declare(url: str, password: str, user_password: str, timeout_s: float) -> None:
    """The workload's user (by the admin), then as that user the queues, the topic and its subscriptions (from the
    earliest offset); retried through start-up 503s (a user created by an attempt whose answer was lost is there)."""
    with trio.fail_after(timeout_s):
        async with AsyncClient(url, username="admin", password=password) as admin:
            while True:
                try:
                    await admin.create_user(USER, user_password)
                    break
                except Conflict:
                    break
                except (MomError, httpx.HTTPError):
                    await trio.sleep(0.5)
        async with AsyncClient(url, username=USER, password=user_password) as user:
            while True:
                try:
                    for queue in (QUEUE_REST, QUEUE_STREAM):
                        await user.create_queue(queue, visibility_timeout_s=VISIBILITY_TIMEOUT_S)
                    await user.create_topic(TOPIC)
                    for sub in SUBSCRIPTIONS:
                        await user.create_subscription(
                            TOPIC, sub, start="earliest", visibility_timeout_s=VISIBILITY_TIMEOUT_S
                        )
                    return
                except (MomError, httpx.HTTPError):
                    await trio.sleep(0.5)


async def left_on_server(url: str, password: str) -> dict[str, int]:
    """Messages the cluster still holds (ready, delayed or in flight), per consumer group."""
    left: dict[str, int] = {}
    async with AsyncClient(url, username="admin", password=password) as admin:
        with trio.move_on_after(30):
            for queue in (QUEUE_REST, QUEUE_STREAM):
                info = await _try(admin.get_queue(queue))
                if info is not None:
                    left[f"queue:{queue}"] = int(info["ready"]) + int(info["delayed"]) + int(info["in_flight"])
            for sub in SUBSCRIPTIONS:
                info = await _try(admin.get_subscription(TOPIC, sub))
                if info is not None:
                    left[f"sub:{TOPIC}/{sub}"] = int(info["ready"]) + int(info["in_flight"])
    return left


async def replay(url: str, password: str) -> ReplicaLog | None:
    """The topic's whole retained log over REST (answered by its leader); None if it could not be read."""
    found: ReplicaLog = []
    offset = 0
    async with AsyncClient(url, username="admin", password=password) as admin:
        with trio.move_on_after(60):
            while True:
                page = await _try(admin.read_topic(TOPIC, from_offset=offset, limit=REPLAY_PAGE))
                if page is None:
                    return None
                for message in page["messages"]:
                    body = message.get("body")
                    pid = body.get("pid") if isinstance(body, dict) else None
                    found.append((int(message["offset"]), str(message["id"]), pid))
                if not page["messages"]:
                    return found
                offset = int(page["next_offset"])
    return None


async def _try(call: Any) -> Any:
    try:
        return await call
    except (MomError, httpx.HTTPError):
        return None
