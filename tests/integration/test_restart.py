"""A restarted node never says that a destination or an account it has not caught up with yet does not exist.

Right after a restart the node's catalog replays from its log; until it is current (see `mom.service.locator`)
requests about a destination are answered 503 with Retry-After, which clients retry, never 404, which they do
not. The same holds for accounts: a valid token of a user the node does not know yet, or that user's login, is
answered 503, never 401 or `invalid_grant`, which clients do not retry (and a refused login counts towards the
user's lock-out). Probed from the moment the port accepts connections, as a client that hits the node then would.
"""

from __future__ import annotations

import time
from collections import Counter

import httpx

from tests.integration.harness import ADMIN_PASSWORD, NodeProcess, token

USER, USER_PASSWORD = "tenant", "a-long-password"

RESTARTS = 3
PROBE_S = 20.0


def probe(node: NodeProcess, bearer: str) -> Counter[int]:
    """Hit the node while it starts until every probe has been answered 2xx a few times; count the statuses."""
    headers = {"Authorization": f"Bearer {bearer}"}
    requests = [
        ("GET", "/v1/queues/q", None),
        ("POST", "/v1/queues/q/receive", {"max_messages": 1}),
        ("GET", "/v1/topics/t/subscriptions/s", None),
        ("POST", "/v1/topics/t/subscriptions/s/receive", {"max_messages": 1}),
    ]
    seen: Counter[int] = Counter()
    ok = 0
    deadline = time.monotonic() + PROBE_S
    with httpx.Client(base_url=node.url, headers=headers, timeout=PROBE_S) as http:
        while ok < 20 and time.monotonic() < deadline:
            for method, path, body in requests:
                try:
                    answer = http.request(method, path, json=body)
                except httpx.TransportError:
                    continue  # not listening yet
                seen[answer.status_code] += 1
                assert answer.status_code != 404, f"{method} {path} during start-up: {answer.text}"
                if answer.status_code == 503:
                    assert int(answer.headers["Retry-After"]) >= 1
                ok += answer.is_success
    return seen


def test_a_restarted_node_answers_503_not_404_until_it_knows_the_metadata(fresh_node: NodeProcess) -> None:
    node = fresh_node.start()
    bearer = token(node.url, "admin", ADMIN_PASSWORD)
    headers = {"Authorization": f"Bearer {bearer}"}
    for method, path in (("PUT", "/v1/queues/q"), ("PUT", "/v1/topics/t"), ("PUT", "/v1/topics/t/subscriptions/s")):
        assert httpx.request(method, node.url + path, headers=headers, timeout=30).status_code == 201
    for attempt in range(RESTARTS):
        if attempt % 2:
            node.stop()
        else:
            node.kill()
        node.start(wait=False)
        seen = probe(node, bearer)
        assert seen[200] >= 20, f"the node did not serve again: {dict(seen)}"
    missing = httpx.get(node.url + "/v1/queues/never-declared", headers=headers, timeout=30)
    assert missing.status_code == 404, "a destination that does not exist is still a 404"


def probe_as_user(node: NodeProcess, bearer: str) -> Counter[int]:
    """A tenant's token and login against the starting node until both succeeded a few times; count statuses."""
    seen: Counter[int] = Counter()
    ok = 0
    deadline = time.monotonic() + PROBE_S
    login = {"grant_type": "password", "username": USER, "password": USER_PASSWORD}
    with httpx.Client(base_url=node.url, timeout=PROBE_S) as http:
        while ok < 20 and time.monotonic() < deadline:
            try:
                answers = [
                    http.get(f"/v1/queues/{USER}.q", headers={"Authorization": f"Bearer {bearer}"}),
                    http.post("/v1/auth/token", data=login),
                ]
            except httpx.TransportError:
                continue  # not listening yet
            for answer in answers:
                seen[answer.status_code] += 1
                assert answer.status_code not in (400, 401, 404), f"{answer.request.url} during start-up: {answer.text}"
                if answer.status_code == 503:
                    assert int(answer.headers["Retry-After"]) >= 1
            ok += all(answer.is_success for answer in answers)
    return seen


def test_a_restarted_node_answers_503_not_401_until_it_knows_the_accounts(fresh_node: NodeProcess) -> None:
    node = fresh_node.start()
    admin = {"Authorization": f"Bearer {token(node.url, 'admin', ADMIN_PASSWORD)}"}
    created = httpx.post(node.url + "/v1/auth/users", json={"username": USER, "password": USER_PASSWORD}, headers=admin)
    assert created.status_code == 201, created.text
    bearer = token(node.url, USER, USER_PASSWORD)
    declared = httpx.put(f"{node.url}/v1/queues/{USER}.q", headers={"Authorization": f"Bearer {bearer}"}, timeout=30)
    assert declared.status_code == 201, declared.text
    for attempt in range(RESTARTS):
        if attempt % 2:
            node.stop()
        else:
            node.kill()
        node.start(wait=False)
        seen = probe_as_user(node, bearer)
        assert seen[200] >= 40, f"the node did not serve again: {dict(seen)}"
    wrong = httpx.post(node.url + "/v1/auth/token", data={"grant_type": "password", "username": USER, "password": "x"})
    assert wrong.status_code == 400, "a wrong password is still refused once the node knows the accounts"
    stranger = httpx.post(
        node.url + "/v1/auth/token", data={"grant_type": "password", "username": "nobody", "password": "x" * 12}
    )
    assert stranger.status_code == 400, "an unknown user is still refused once the node knows the accounts"
