"""Finding 5: password guessing is throttled per name and per address, logged and counted; never forever."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from mom.api.auth.throttle import Allowance, LoginThrottle
from mom.errors import LoginThrottled
from tests.integration.harness import NodeProcess
from tests.security.helpers import node_with, register

SETTINGS = "[auth]\nlogin_free_failures = 3\nlogin_max_lockout_s = 2\naddress_free_failures = 50\n"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    process = node_with(tmp_path_factory.mktemp("throttle"), SETTINGS)
    yield process
    process.stop()


def _login(url: str, username: str, password: str) -> httpx.Response:
    form = {"grant_type": "password", "username": username, "password": password}
    return httpx.post(url + "/v1/auth/token", data=form, timeout=30)


def test_wrong_passwords_lock_the_name_for_a_bounded_time(guarded: NodeProcess) -> None:
    assert register(guarded.url, "victim").status_code == 201
    assert [_login(guarded.url, "victim", f"guess-{i}").status_code for i in range(4)] == [400, 400, 400, 400]
    throttled = _login(guarded.url, "victim", "guess-5")  # the 4th failure locked the name for 1 s
    assert throttled.status_code == 429, throttled.text
    assert throttled.headers["content-type"].startswith("application/problem+json")
    assert throttled.json()["type"].endswith("/login-throttled") and int(throttled.headers["Retry-After"]) >= 1
    time.sleep(1.1)
    assert _login(guarded.url, "victim", "guess-6").status_code == 400  # free again; this failure locks 2 s
    assert _login(guarded.url, "VICTIM", "a-long-password").status_code == 429  # locked whatever the password
    time.sleep(2.2)  # the cap (2 s here, 60 s by default): the real user is never locked out for longer
    assert _login(guarded.url, "victim", "a-long-password").status_code == 200
    assert _login(guarded.url, "victim", "wrong-again").status_code == 400  # success cleared the count
    metrics = httpx.get(guarded.url + "/metrics").text
    assert 'mom_login_attempts_total{outcome="throttled"}' in metrics
    assert 'mom_login_attempts_total{outcome="failed"}' in metrics
    assert "locked for" in guarded.log_path.read_text()


def test_unknown_names_are_throttled_alike(guarded: NodeProcess) -> None:
    statuses = [_login(guarded.url, "nobody-at-all", "x").status_code for _ in range(6)]
    assert 429 in statuses


def test_the_address_book_locks_a_guesser_spraying_names() -> None:
    clock = [0.0]
    throttle = LoginThrottle(name=Allowance(5, 60), address=Allowance(3, 300), clock=lambda: clock[0])
    for i in range(3):
        throttle.check(f"user:n{i}", "10.1.1.1")
        assert throttle.failed(f"user:n{i}", "10.1.1.1") == 0
    assert throttle.failed("user:n3", "10.1.1.1") == 1
    with pytest.raises(LoginThrottled) as info:
        throttle.check("user:someone-else", "10.1.1.1")
    assert info.value.retry_after_s == 1
    throttle.check("user:someone-else", "10.2.2.2")
    clock[0] += 1.0
    throttle.check("user:someone-else", "10.1.1.1")


def test_locks_double_up_to_the_cap_and_are_forgotten() -> None:
    clock = [0.0]
    throttle = LoginThrottle(
        name=Allowance(1, 8), address=Allowance(1000, 1), clock=lambda: clock[0], forget_after_s=100
    )
    locks = [throttle.failed("user:a", None) for _ in range(7)]
    assert locks == [0, 1, 2, 4, 8, 8, 8]
    clock[0] += 8.5
    throttle.check("user:a", None)
    clock[0] += 200
    assert throttle.failed("user:a", None) == 0  # forgotten: the allowance is back
