"""The dashboard against one real node: log in, watch queues and topics change live, act on them from the page."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.sync_api import expect

from tests.e2e.conftest import log_in, register
from tests.integration.harness import Api, NodeProcess


def fresh(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_login_keeps_the_token_out_of_urls_and_logout_forgets_it(page: Any, node: NodeProcess) -> None:
    page.goto(node.url + "/ui")
    expect(page.get_by_test_id("login-form")).to_be_visible()
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", "wrong-password")
    page.click("[data-testid=login-form] button[type=submit]")
    expect(page.get_by_test_id("login-error")).not_to_be_empty()

    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    log_in(page, node.url)
    expect(page.get_by_test_id("node-mom1")).to_have_attribute("data-state", "up")
    stored = page.evaluate("sessionStorage.getItem('mom.session')")
    bearer = re.search(r'"token":"([^"]+)"', stored)
    assert bearer is not None
    assert all(bearer[1] not in url for url in [*requested, page.url])

    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("login-form")).to_be_visible()
    assert page.evaluate("sessionStorage.getItem('mom.session')") is None
    page.reload()
    expect(page.get_by_test_id("login-form")).to_be_visible()


def test_a_queue_appears_and_its_depth_follows_publish_and_consume(page: Any, node: NodeProcess, admin: Api) -> None:
    name = fresh("orders")
    log_in(page, node.url)
    page.get_by_role("link", name="Queues").click()
    expect(page.get_by_test_id("queue-list")).to_be_visible()
    row = page.get_by_test_id(f"queue-row-{name}")
    expect(row).to_have_count(0)

    assert admin.put(f"/v1/queues/{name}", json={}).status_code == 201
    expect(row).to_be_visible()
    expect(row.locator("[data-field=ready]")).to_have_text("0")

    admin.publish(name, *range(5))
    expect(row.locator("[data-field=ready]")).to_have_text("5")
    received = admin.receive(name, max_messages=2)
    expect(row.locator("[data-field=ready]")).to_have_text("3")
    expect(row.locator("[data-field=in_flight]")).to_have_text("2")
    admin.ack(name, *(m["receipt"] for m in received))
    expect(row.locator("[data-field=in_flight]")).to_have_text("0")


def test_rates_move_while_messages_flow(page: Any, node: NodeProcess, admin: Api) -> None:
    name = fresh("flow")
    assert admin.put(f"/v1/queues/{name}", json={}).status_code == 201
    log_in(page, node.url)
    page.goto(f"{node.url}/ui/#/queues/{name}")
    rate = page.get_by_test_id("stat-publish-rate").locator(".value")
    expect(rate).to_have_text("0/s")
    for _ in range(6):
        admin.publish(name, *range(20))
        page.wait_for_timeout(400)
    expect(rate).not_to_have_text(re.compile(r"^(0/s|\u2013)$"))
    expect(page.get_by_test_id("rate-chart").locator("path[data-series=published]")).to_have_count(1)


def test_publish_from_the_page_then_peek_without_consuming(page: Any, node: NodeProcess, admin: Api) -> None:
    name = fresh("peek")
    assert admin.put(f"/v1/queues/{name}", json={}).status_code == 201
    log_in(page, node.url)
    page.goto(f"{node.url}/ui/#/queues/{name}")
    form = page.get_by_test_id("publish-form")
    form.locator("textarea[name=body]").fill('{"hello": "from the page"}')
    form.locator("input[name=headers]").fill('{"source": "dashboard"}')
    form.get_by_role("button", name="Publish").click()
    expect(page.get_by_test_id("toast")).to_contain_text("Published")
    expect(page.get_by_test_id("stat-ready").locator(".value")).to_have_text("1")

    page.get_by_test_id("peek").click()
    message = page.get_by_test_id("peeked-message")
    expect(message).to_have_count(1)
    expect(message).to_contain_text('{"hello":"from the page"}')
    expect(message).to_contain_text('"source":"dashboard"')
    # peeking leased nothing: a consumer still gets the message, first delivery
    got = admin.receive(name, max_messages=10)
    assert [(m["body"], m["deliveries"]) for m in got] == [({"hello": "from the page"}, 1)]


def test_purge_and_delete_ask_first(page: Any, node: NodeProcess, admin: Api) -> None:
    name = fresh("purge")
    assert admin.put(f"/v1/queues/{name}", json={}).status_code == 201
    admin.publish(name, *range(7))
    log_in(page, node.url)
    page.goto(f"{node.url}/ui/#/queues/{name}")
    ready = page.get_by_test_id("stat-ready").locator(".value")
    expect(ready).to_have_text("7")

    page.get_by_test_id("purge").click()
    expect(page.get_by_test_id("confirm-dialog")).to_be_visible()
    page.get_by_test_id("confirm-cancel").click()
    page.wait_for_timeout(1500)
    expect(ready).to_have_text("7")

    page.get_by_test_id("purge").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("toast")).to_contain_text("Purged 7 messages")
    expect(ready).to_have_text("0")

    page.get_by_test_id("delete").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page).to_have_url(re.compile(r"#/queues$"))
    assert admin.get(f"/v1/queues/{name}").status_code == 404


def test_redrive_moves_dead_letters_back(page: Any, node: NodeProcess, admin: Api) -> None:
    source, dlq = fresh("work"), fresh("work-dlq")
    assert admin.put(f"/v1/queues/{dlq}", json={}).status_code == 201
    attrs = {"max_deliveries": 1, "dead_letter_queue": dlq}
    assert admin.put(f"/v1/queues/{source}", json=attrs).status_code == 201
    admin.publish(source, "a", "b", "c")
    failed = admin.receive(source, max_messages=3)
    assert admin.post(f"/v1/queues/{source}/nack", json={"receipts": [m["receipt"] for m in failed]}).status_code == 200

    log_in(page, node.url)
    page.goto(f"{node.url}/ui/#/queues/{dlq}")
    expect(page.get_by_test_id("stat-ready").locator(".value")).to_have_text("3")
    page.get_by_test_id("redrive").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id("toast")).to_contain_text("Moved 3")
    expect(page.get_by_test_id("stat-ready").locator(".value")).to_have_text("0")
    assert sorted(m["body"] for m in admin.receive(source, max_messages=10)) == ["a", "b", "c"]


def test_topic_page_shows_subscription_lag(page: Any, node: NodeProcess, admin: Api) -> None:
    name = fresh("news")
    assert admin.put(f"/v1/topics/{name}", json={}).status_code == 201
    assert admin.put(f"/v1/topics/{name}/subscriptions/reader", json={"start": "earliest"}).status_code == 201
    log_in(page, node.url)
    page.goto(f"{node.url}/ui/#/topics/{name}")
    lag = page.get_by_test_id("subscription-row-reader").locator("[data-field=lag]")
    expect(lag).to_have_text("0")
    assert (
        admin.post(f"/v1/topics/{name}/messages", json={"messages": [{"body": i} for i in range(4)]}).status_code == 201
    )
    expect(lag).to_have_text("4")
    got = admin.post(f"/v1/topics/{name}/subscriptions/reader/receive", json={"max_messages": 3}).json()["messages"]
    admin.post(f"/v1/topics/{name}/subscriptions/reader/ack", json={"receipts": [m["receipt"] for m in got]})
    expect(lag).to_have_text("1")

    page.get_by_test_id("replay").click()
    expect(page.get_by_test_id("replayed-message")).to_have_count(4)


def test_docs_render_without_network(page: Any, node: NodeProcess) -> None:
    outside: list[str] = []

    def only_local(route: Any) -> None:
        if route.request.url.startswith(node.url):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_local)
    page.goto(node.url + "/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("mom")
    expect(page.locator(".opblock").first).to_be_visible()
    assert outside == []


def test_a_user_sees_only_what_their_scopes_allow(page: Any, node: NodeProcess, admin: Api) -> None:
    mine, theirs = fresh("team-a"), fresh("team-b")
    for name in (mine, theirs):
        assert admin.put(f"/v1/queues/{name}", json={}).status_code == 201
    username = fresh("carol")
    register(admin, username, "a-long-password")
    granted = admin.post(f"/v1/auth/users/{username}/grant", json={"scopes": [f"mom.read:{mine}"]})
    assert granted.status_code == 200, granted.text

    log_in(page, node.url, username, "a-long-password")
    expect(page.locator("#nav-admin")).to_be_hidden()
    page.get_by_role("link", name="Queues").click()
    expect(page.get_by_test_id(f"queue-row-{mine}")).to_be_visible()
    expect(page.get_by_test_id(f"queue-row-{theirs}")).to_have_count(0)


def test_admin_manages_users_and_clients(page: Any, node: NodeProcess, admin: Api) -> None:
    username, client_id = fresh("dave"), fresh("billing")
    log_in(page, node.url)
    page.locator("#nav-admin").click()
    expect(page.get_by_test_id("user-row-admin")).to_be_visible()

    form = page.get_by_test_id("create-user")
    form.locator("input[name=username]").fill(username)
    form.locator("input[name=password]").fill("a-long-password")
    form.locator("input[name=scopes]").fill("mom.read:reports*")
    form.get_by_role("button", name="Create user").click()
    expect(page.get_by_test_id(f"user-row-{username}")).to_contain_text("mom.read:reports*")

    form = page.get_by_test_id("create-client")
    form.locator("input[name=client_id]").fill(client_id)
    form.locator("input[name=scopes]").fill("mom.write:orders mom.read:orders")
    form.get_by_role("button", name="Create client").click()
    secret = page.get_by_test_id("secret")
    expect(secret).not_to_be_empty()
    expect(page.get_by_test_id(f"client-row-{client_id}")).to_contain_text("mom.write:orders")
    granted = admin.post(
        "/v1/auth/token",
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret.inner_text()},
    )
    assert granted.status_code == 200, granted.text

    page.get_by_test_id(f"user-row-{username}").get_by_role("button", name="Delete").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id(f"user-row-{username}")).to_have_count(0)
    page.get_by_test_id(f"client-row-{client_id}").get_by_role("button", name="Delete").click()
    page.get_by_test_id("confirm-ok").click()
    expect(page.get_by_test_id(f"client-row-{client_id}")).to_have_count(0)
    assert admin.get(f"/v1/auth/users/{username}").status_code == 404
