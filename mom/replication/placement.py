"""Which nodes hold a destination: rendezvous (highest-random-weight) hashing of its name.

Every node computes the same ordered replica set from the same inputs, with no coordination and no table to keep
in sync. The first replica is the destination's preferred leader, so leadership spreads evenly over the nodes (as
in the original 3-node design, where each node owned some destinations and replicated others); adding or removing
a node moves only the destinations whose top-ranked nodes change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from mom.broker.commands import Destination, QueueRef, SubscriptionRef, TopicRef

METADATA_GROUP = "meta"
"""The group of all nodes that holds users, OAuth clients and the catalog of destinations."""


def group_id(destination: Destination | SubscriptionRef) -> str:
    """The replication group of a destination: a queue is its own group; a topic's subscriptions live with it."""
    match destination:
        case QueueRef(name=name):
            return f"q.{name}"
        case TopicRef(name=name) | SubscriptionRef(topic=name):
            return f"t.{name}"
    raise TypeError(f"not a destination: {destination!r}")


def _weight(node: str, key: str) -> int:
    digest = hashlib.blake2b(f"{node}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def replicas(group: str, nodes: Sequence[str], replication_factor: int) -> list[str]:
    """The ordered replica set of `group`: `replication_factor` nodes, preferred leader first."""
    if not 1 <= replication_factor <= len(nodes):
        raise ValueError(f"replication factor {replication_factor} needs 1 to {len(nodes)} nodes")
    if group == METADATA_GROUP:
        return list(nodes)
    return sorted(nodes, key=lambda node: (-_weight(node, group), node))[:replication_factor]


def declared_ms(data_group: str) -> int:
    """When the destination of a data group was declared (epoch milliseconds): its id is `kind.name@declared`."""
    return int(data_group.rpartition("@")[2])
