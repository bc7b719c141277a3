"""The membership endpoints' answers to bad input and to a node that runs alone (a cluster's are in
test_membership.py): 4xx problem+json, and nothing changed."""

from __future__ import annotations

import pytest

from tests.integration.harness import Api


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"id": "mom4", "rest": "127.0.0.1:1"},
        {"id": "bad id!", "rest": "127.0.0.1:1", "replication": "127.0.0.1:2"},
        {"id": "mom4", "rest": "nowhere", "replication": "127.0.0.1:2"},
        {"id": "mom4", "rest": "http://127.0.0.1:1", "replication": "127.0.0.1:99999"},
        {"id": "mom4", "rest": "127.0.0.1:1", "replication": "127.0.0.1:2", "extra": 1},
    ],
)
def test_add_node_rejects_malformed_bodies(admin: Api, body: dict[str, object]) -> None:
    answer = admin.post("/v1/cluster/nodes", json=body)
    assert answer.status_code == 400, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_membership_needs_an_admin(api: Api) -> None:
    assert api.get("/v1/cluster/nodes").status_code == 403
    body = {"id": "mom4", "rest": "127.0.0.1:1", "replication": "127.0.0.1:2"}
    assert api.post("/v1/cluster/nodes", json=body).status_code == 403
    assert api.post("/v1/cluster/nodes/mom1/drain").status_code == 403
    assert api.delete("/v1/cluster/nodes/mom1").status_code == 403


def test_a_node_alone_lists_itself_and_refuses_changes(admin: Api) -> None:
    nodes = admin.get("/v1/cluster/nodes").json()
    assert [n["id"] for n in nodes["nodes"]] == ["mom1"] and nodes["moves"] == []
    answer = admin.post("/v1/cluster/nodes", json={"id": "mom4", "rest": "127.0.0.1:1", "replication": "127.0.0.1:2"})
    assert answer.status_code == 409 and "alone" in answer.json()["detail"]
    assert admin.post("/v1/cluster/nodes/ghost/drain").status_code == 404
    assert admin.delete("/v1/cluster/nodes/ghost").status_code == 404
    assert admin.delete("/v1/cluster/nodes/mom1").status_code == 409
    assert [n["id"] for n in admin.get("/v1/cluster/nodes").json()["nodes"]] == ["mom1"]


def test_move_reports_are_checked_and_change_nothing_unless_a_move_is_in_progress(admin: Api, api: Api) -> None:
    body = {"group": "q.none", "source": "mom1", "target": "mom2", "replicas": ["mom2"]}
    assert api.post("/v1/cluster/moves", json=body).status_code == 403
    for bad in [{}, {**body, "group": "x.none"}, {**body, "replicas": []}, {**body, "target": "bad id"}]:
        assert admin.post("/v1/cluster/moves", json=bad).status_code == 400, bad
    answer = admin.post("/v1/cluster/moves", json=body)
    assert answer.status_code == 200 and answer.json() == {"recorded": False}
