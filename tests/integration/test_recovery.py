"""A replica that lost data (a flipped bit in the middle of its log, or a wiped data directory) on a real 3-node
cluster: it must never help elect a leader that lacks what it had acknowledged.

The writes are acknowledged by the leader and one follower only (the third replica is down). That follower
then loses them while stopped, and the leader is killed: the third replica, back, never had the writes, and
with the amnesiac's vote it would be elected and serve the queue without them. The cluster must refuse to
serve the queue instead (503) until the old leader is back, and then every acknowledged message is there.

Meanwhile the replica that lost its data cannot catch up with the metadata either (its only voting peer up has no
majority), so it does not know the accounts, nor, for a token signed by the leader that is down, the signing key:
it answers a valid token 503 (retry), never 401 (which clients do not retry).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mom.log.segment import HEADER
from tests.integration.harness import Api, Cluster, NodeProcess

pytestmark = pytest.mark.transport

MESSAGES = 30
REFUSAL_WINDOW_S = 6.0


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    running = Cluster(tmp_path / "cluster").start()
    yield running
    running.kill_all()


def get_when_up(api: Api, path: str, timeout_s: float = 30.0) -> httpx.Response:
    """GET from a node that was just started and may not listen yet (nor be ready: no metadata leader)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return api.get(path)
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def flip_a_bit_mid_log(node: NodeProcess) -> Path:
    """Flip a bit in the first record of the queue's newest log segment: valid records follow it."""
    newest = sorted((node.data_dir / "groups").glob("q.q@*/log/*.log"))[-1]
    data = bytearray(newest.read_bytes())
    assert len(data) > 4 * HEADER.size, "the segment holds several records"
    data[HEADER.size] ^= 0x08
    newest.write_bytes(bytes(data))
    return newest


LEARNER = re.compile(r"group (\S+) on \S+ is a learner")
JOINING = re.compile(r"group (\S+) on \S+ starts with nothing on disk")
VOTER = re.compile(r"group (\S+) on \S+ (?:caught up with the leader: it votes again|is a new group: it votes)")


def groups_still_learning(log_text: str, group_prefix: str | None) -> set[str]:
    """The groups a node's log says started empty or turned learner and have not said since that they vote, and
    `group_prefix` itself until a group of that prefix votes there (it appears only once the catalog is back).
    Only the node's last start counts: the harness marks each start in the log with `=== start`."""
    log_text = log_text.rsplit("=== start ", 1)[-1]
    voting = set(VOTER.findall(log_text))
    waiting = (set(LEARNER.findall(log_text)) | set(JOINING.findall(log_text))) - voting
    if group_prefix is not None and not any(group.startswith(group_prefix) for group in voting):
        waiting.add(group_prefix)
    return waiting


def ask_the_amnesiac(node: NodeProcess, tokens: dict[str, str], answers: dict[str, set[int]]) -> None:
    """Ask the replica that lost its data about the queue with each signer's token; note what it answers."""
    for signer, authorization in tokens.items():
        with contextlib.suppress(httpx.TransportError):  # not listening yet
            asked = httpx.get(node.url + "/v1/queues/q", headers={"Authorization": authorization}, timeout=30)
            answers[signer].add(asked.status_code)


@pytest.mark.parametrize("loss", ["flipped-bit", "wiped"])
def test_a_replica_that_lost_its_data_never_helps_lose_acknowledged_messages(cluster: Cluster, loss: str) -> None:
    api = cluster.api("mom1")
    assert api.retrying("PUT", "/v1/queues/q").status_code == 201
    deadline = time.monotonic() + 20
    while (leader := cluster.leader_of("q")) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert leader is not None
    follower, third = (node_id for node_id in cluster.nodes if node_id != leader)
    watcher = cluster.api(third)  # its token stays valid there: the node keeps its signing key
    tokens = {signer: cluster.api(signer).headers["Authorization"] for signer in (leader, third)}
    cluster.nodes[third].kill()
    writer = cluster.api(leader)
    for number in range(MESSAGES):
        writer.publish("q", number)

    assert cluster.nodes[follower].stop() == 0
    if loss == "wiped":
        shutil.rmtree(cluster.nodes[follower].data_dir)
    else:
        flip_a_bit_mid_log(cluster.nodes[follower])
    cluster.nodes[leader].kill()
    cluster.nodes[follower].start(wait=False)
    cluster.nodes[third].start(wait=False)

    answers: set[int] = set()
    amnesiac: dict[str, set[int]] = {signer: set() for signer in tokens}
    end = time.monotonic() + REFUSAL_WINDOW_S
    while time.monotonic() < end:
        response = get_when_up(watcher, "/v1/queues/q")
        answers.add(response.status_code)
        if response.status_code == 200:
            assert response.json()["messages"] == MESSAGES, "served without acknowledged messages"
        ask_the_amnesiac(cluster.nodes[follower], tokens, amnesiac)
        time.sleep(0.1)
    # A loaded machine may take longer than the window to start it: keep asking (still with only the amnesiac
    # and the third up) until it has answered each token once.
    deadline = time.monotonic() + 30
    while not all(amnesiac.values()):
        assert time.monotonic() < deadline, f"{follower} answered nothing: {amnesiac}"
        ask_the_amnesiac(cluster.nodes[follower], {s: a for s, a in tokens.items() if not amnesiac[s]}, amnesiac)
        time.sleep(0.2)
    assert all(seen <= {503} for seen in amnesiac.values()), f"a valid token refused by {follower}: {amnesiac}"
    # 503: no leader for the queue. 404 happens too, for now, when the third replica has not applied the
    # declaration yet and no metadata leader can tell it (issue 8 makes that a 503 as well): either way, refused.
    assert answers <= {404, 503}, f"the queue must be refused while only the amnesiac and the third are up: {answers}"

    cluster.nodes[leader].start()
    reader = cluster.api(third)
    received: list[object] = []
    deadline = time.monotonic() + 60
    while len(received) < MESSAGES and time.monotonic() < deadline:
        batch = reader.receive("q", max_messages=100, wait_s=1)
        received += [m["body"] for m in batch]
        if batch:
            reader.ack("q", *[m["receipt"] for m in batch])
    assert sorted(received) == list(range(MESSAGES))  # type: ignore[type-var]

    # The replica that lost its data has caught up and votes again: without the old leader, it and the third
    # replica elect a leader between them, which has every message. Catching up is the leader's to tell, so wait
    # until every group that started empty or turned learner there, the queue's included, says it votes (killing
    # the leader earlier leaves a group with one voter, rightly without a leader).
    deadline = time.monotonic() + 60
    recovering = "q.q@" if loss == "wiped" else None  # a wiped replica learns of the queue again; the other knew it
    while groups_still_learning(cluster.nodes[follower].log_path.read_text(errors="replace"), recovering):
        assert time.monotonic() < deadline, cluster.nodes[follower].log_tail()
        time.sleep(0.2)
    cluster.nodes[leader].kill()
    deadline = time.monotonic() + 60
    while (response := reader.post("/v1/queues/q/messages", json={"messages": [{"body": "after"}]})).status_code == 503:
        assert time.monotonic() < deadline, "no leader of q among the recovered replica and the third"
        time.sleep(0.2)
    assert response.status_code == 201, response.text
    assert reader.get("/v1/queues/q").json()["messages"] == 1
