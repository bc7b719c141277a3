from collections import Counter

import pytest

from mom.broker.commands import QueueRef, SubscriptionRef, TopicRef
from mom.replication.placement import METADATA_GROUP, group_id, replicas

NODES = ["mom1", "mom2", "mom3"]


def test_every_node_computes_the_same_ordered_replica_set() -> None:
    assert replicas("q.orders", NODES, 3) == replicas("q.orders", list(reversed(NODES)), 3)
    assert sorted(replicas("q.orders", NODES, 3)) == NODES


def test_preferred_leaders_spread_over_the_nodes() -> None:
    leaders = Counter(replicas(f"q.queue-{i}", NODES, 3)[0] for i in range(3000))
    assert set(leaders) == set(NODES)
    assert min(leaders.values()) > 800


def test_replication_factor_picks_a_prefix_of_the_ranking() -> None:
    for i in range(100):
        assert replicas(f"t.{i}", NODES, 2) == replicas(f"t.{i}", NODES, 3)[:2]


def test_adding_a_node_moves_only_some_preferred_leaders() -> None:
    before = {i: replicas(f"q.{i}", NODES, 1)[0] for i in range(1000)}
    after = {i: replicas(f"q.{i}", [*NODES, "mom4"], 1)[0] for i in range(1000)}
    moved = [i for i in before if before[i] != after[i]]
    assert all(after[i] == "mom4" for i in moved)
    assert 150 < len(moved) < 350


def test_metadata_group_is_on_every_node_and_bad_factors_are_refused() -> None:
    assert replicas(METADATA_GROUP, NODES, 1) == NODES
    with pytest.raises(ValueError):
        replicas("q.x", NODES, 4)


def test_subscriptions_live_in_their_topics_group() -> None:
    assert group_id(SubscriptionRef("news", "reader")) == group_id(TopicRef("news")) == "t.news"
    assert group_id(QueueRef("news")) == "q.news"
