"""The `mom` command through click's CliRunner, talking to a fake server (httpx.MockTransport)."""

from __future__ import annotations

import json
import re
import ssl
import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from mom.cli import CliState, main
from mom.client import Client
from mom.config import ENV_KEYS, Settings
from mom.errors import Unauthorized

Route = Callable[[httpx.Request], httpx.Response]


class FakeServer:
    """Answers by (method, path) from a table of handlers and records every request."""

    def __init__(self, routes: dict[tuple[str, str], Route]) -> None:
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.routes[request.method, request.url.path](request)

    def bodies(self, method: str, path: str) -> list[Any]:
        return [json.loads(r.content) for r in self.requests if (r.method, r.url.path) == (method, path)]


def answer(payload: Any, status: int = 200) -> Route:
    return lambda request: httpx.Response(status, json=payload)


def published(request: httpx.Request) -> httpx.Response:
    count = len(json.loads(request.content)["messages"])
    return httpx.Response(201, json={"messages": [{"id": f"id{i}", "offset": i} for i in range(count)]})


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The developer's own MOM_* settings must not leak into the tests."""
    for var in [*ENV_KEYS, "MOM_URL", "MOM_TOKEN", "MOM_USERNAME", "MOM_PASSWORD", "MOM_CLIENT_ID"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("MOM_CLIENT_SECRET", raising=False)


def run(server: FakeServer, *args: str, input: str | None = None, env: dict[str, str] | None = None) -> Result:
    state = CliState(transport=httpx.MockTransport(server), retries=0)
    return CliRunner().invoke(main, ["--token", "t", *args], obj=state, input=input, env=env)


# ---------------------------------------------------------------------------------------------------------
# publish


def test_publish_from_arguments_parses_json_or_takes_the_text() -> None:
    server = FakeServer({("POST", "/v1/queues/orders/messages"): published})
    result = run(server, "publish", "--queue", "orders", "--header", "src=cli", '{"a": 1}', "hello", "42", "--ids")
    assert result.exit_code == 0, result.output
    assert result.output.split() == ["id0", "id1", "id2"]
    [body] = server.bodies("POST", "/v1/queues/orders/messages")
    bodies = [{"a": 1}, "hello", 42]
    assert all(len(m.pop("dedup_id")) == 32 for m in body["messages"]), "retries by the client never duplicate"
    assert body == {"messages": [{"body": b, "headers": {"src": "cli"}} for b in bodies]}
    assert server.requests[0].headers["authorization"] == "Bearer t"


def test_publish_from_stdin_sends_batches_of_100() -> None:
    server = FakeServer({("POST", "/v1/topics/events/messages"): published})
    lines = "\n".join(json.dumps({"n": i}) for i in range(250)) + "\n\n"
    result = run(server, "publish", "--topic", "events", "--delay", "1.5", input=lines)
    assert result.exit_code == 0, result.output
    batches = server.bodies("POST", "/v1/topics/events/messages")
    assert [len(b["messages"]) for b in batches] == [100, 100, 50]
    sent = [m["body"]["n"] for b in batches for m in b["messages"]]
    assert sent == list(range(250))
    assert all(m["delay_s"] == 1.5 for b in batches for m in b["messages"])
    assert re.fullmatch(r"published 250 messages to topic events in [0-9.]+ s \([0-9,]+/s\)\n", result.stdout)
    assert result.stderr == ""  # not a terminal: no progress line


def test_publish_shows_progress_on_a_terminal_for_long_inputs(monkeypatch: pytest.MonkeyPatch) -> None:
    from mom.cli import messaging

    monkeypatch.setattr(messaging, "_is_terminal", lambda stream: True)
    server = FakeServer({("POST", "/v1/queues/orders/messages"): published})
    result = run(server, "publish", "--queue", "orders", input="".join(f"{i}\n" for i in range(1000)))
    assert result.exit_code == 0, result.output
    assert "\rpublishing: 1000 messages" in result.stderr and "\rpublishing: 200 messages" in result.stderr
    assert result.stdout.startswith("published 1000 messages to queue orders")
    short = run(server, "publish", "--queue", "orders", "one")
    assert short.stderr == "" and short.stdout.startswith("published 1 message to queue orders")


@pytest.mark.parametrize(
    "args",
    [
        ["publish", "x"],
        ["publish", "--queue", "q", "--topic", "t", "x"],
        ["publish", "--queue", "q", "--dedup-id", "d", "x", "y"],
        ["publish", "--queue", "q", "--header", "novalue", "x"],
    ],
)
def test_publish_usage_errors(args: list[str]) -> None:
    server = FakeServer({})
    result = run(server, *args)
    assert result.exit_code == 2
    assert server.requests == []


# ---------------------------------------------------------------------------------------------------------
# consume


def deliveries(*ids: str) -> dict[str, Any]:
    return {"messages": [{"id": i, "body": {"id": i}, "receipt": f"r-{i}", "deliveries": 1} for i in ids]}


def test_consume_max_prints_each_message_and_acks_after_printing() -> None:
    batches = iter([deliveries("a", "b"), deliveries("c")])
    server = FakeServer(
        {
            ("POST", "/v1/queues/orders/receive"): lambda r: httpx.Response(200, json=next(batches)),
            ("POST", "/v1/queues/orders/ack"): answer({"acked": [], "unknown": []}),
        }
    )
    result = run(server, "consume", "--queue", "orders", "--max", "3", "--wait", "2")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.output.splitlines()] == ["a", "b", "c"]
    receives = server.bodies("POST", "/v1/queues/orders/receive")
    assert receives == [{"max_messages": 3, "wait_s": 2.0}, {"max_messages": 1, "wait_s": 2.0}]
    acks = server.bodies("POST", "/v1/queues/orders/ack")
    assert acks == [{"receipts": ["r-a", "r-b"]}, {"receipts": ["r-c"]}]
    paths = [r.url.path.rsplit("/", 1)[-1] for r in server.requests]
    assert paths == ["receive", "ack", "receive", "ack"]


def test_consume_defaults_to_one_message_without_waiting_and_no_ack_leaves_it() -> None:
    binary = {"messages": [{"id": "a", "body_base64": "AAE=", "receipt": "r"}]}
    server = FakeServer({("POST", "/v1/topics/t/subscriptions/s/receive"): answer(binary)})
    result = run(server, "consume", "--topic", "t", "--subscription", "s", "--no-ack")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"id": "a", "body_base64": "AAE=", "receipt": "r"}
    assert server.bodies("POST", "/v1/topics/t/subscriptions/s/receive") == [{"max_messages": 1, "wait_s": 0.0}]
    assert len(server.requests) == 1


def test_consume_stops_when_the_queue_is_empty_without_follow() -> None:
    server = FakeServer({("POST", "/v1/queues/q/receive"): answer({"messages": []})})
    result = run(server, "consume", "--queue", "q", "--max", "50")
    assert result.exit_code == 0
    assert result.output == ""
    assert len(server.requests) == 1


class FakeStreamSubscription:
    """Stands in for `Client.consume`'s subscription: yields the given messages, then Ctrl-C."""

    def __init__(self, messages: list[dict[str, Any]], events: list[str]) -> None:
        self.messages = messages
        self.events = events

    def __enter__(self) -> FakeStreamSubscription:
        self.events.append("open")
        return self

    def __exit__(self, *exc: object) -> None:
        self.events.append("close")

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for message in self.messages:
            self.events.append(f"deliver {message['id']}")
            yield message
        raise KeyboardInterrupt

    def ack_nowait(self, *receipts: str) -> None:
        self.events.append(f"ack {' '.join(receipts)}")


def follow(monkeypatch: pytest.MonkeyPatch, *args: str, messages: list[dict[str, Any]]) -> tuple[Result, list[Any]]:
    events: list[Any] = []

    def consume(self: Client, **options: Any) -> FakeStreamSubscription:
        events.append(options)
        return FakeStreamSubscription(messages, events)

    monkeypatch.setattr(Client, "consume", consume)
    return run(FakeServer({}), "consume", *args), events


def test_consume_follow_is_pushed_over_the_stream_and_acks_after_printing(monkeypatch: pytest.MonkeyPatch) -> None:
    result, events = follow(monkeypatch, "--queue", "q", "--follow", messages=deliveries("a", "b")["messages"])
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.output.splitlines()] == ["a", "b"]
    assert events[0] == {"queue": "q", "topic": None, "subscription": None, "prefetch": 100}
    assert events[1:] == ["open", "deliver a", "ack r-a", "deliver b", "ack r-b", "close"]
    assert "Aborted" not in result.output


def test_consume_follow_max_stops_and_bounds_the_prefetch(monkeypatch: pytest.MonkeyPatch) -> None:
    messages = deliveries("a", "b", "c")["messages"]
    args = ("--topic", "t", "--subscription", "s", "--follow", "--max", "2", "--prefetch", "50")
    result, events = follow(monkeypatch, *args, messages=messages)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.output.splitlines()] == ["a", "b"]
    assert events[0] == {"queue": None, "topic": "t", "subscription": "s", "prefetch": 2}
    assert events[-1] == "close" and "deliver c" not in events


class ExpiringStreamSubscription(FakeStreamSubscription):
    """Delivers its messages, then the server closes the socket because the token expired."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for message in self.messages:
            self.events.append(f"deliver {message['id']}")
            yield message
        raise Unauthorized("the token expired; reconnect")


def test_consume_follow_subscribes_again_with_a_new_token_when_the_old_one_expires(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    events: list[Any] = []
    subscriptions = iter(
        [
            ExpiringStreamSubscription(deliveries("a")["messages"], events),
            FakeStreamSubscription(deliveries("b")["messages"], events),
        ]
    )
    monkeypatch.setattr(Client, "consume", lambda self, **options: next(subscriptions))
    grant = {"access_token": "fresh", "token_type": "Bearer", "expires_in": 3600, "scope": "mom.read:*"}
    server = FakeServer({("POST", "/v1/auth/token"): answer(grant)})
    state = CliState(transport=httpx.MockTransport(server), retries=0)
    args = ["--username", "u", "--password", "p", "consume", "--queue", "q", "--follow"]
    result = CliRunner().invoke(main, args, obj=state)
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.output.splitlines()] == ["a", "b"]
    assert len(server.requests) == 1, "one new token for the second subscription"
    assert events == ["open", "deliver a", "ack r-a", "close", "open", "deliver b", "ack r-b", "close"]


def test_consume_follow_gives_up_when_a_fresh_subscription_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[Any] = []
    monkeypatch.setattr(Client, "consume", lambda self, **options: ExpiringStreamSubscription([], events))
    server = FakeServer({})
    state = CliState(transport=httpx.MockTransport(server), retries=0)
    result = CliRunner().invoke(
        main, ["--username", "u", "--password", "p", "consume", "--queue", "q", "--follow"], obj=state
    )
    assert result.exit_code == 1
    assert "token expired" in result.output
    assert server.requests == [], "no token loop when nothing was ever consumed"


def test_consume_follow_no_ack_long_polls_over_rest_until_ctrl_c() -> None:
    polls: Iterator[dict[str, Any]] = iter([deliveries("a"), {"messages": []}])

    def receive(request: httpx.Request) -> httpx.Response:
        try:
            return httpx.Response(200, json=next(polls))
        except StopIteration:
            raise KeyboardInterrupt from None

    server = FakeServer({("POST", "/v1/queues/q/receive"): receive})
    result = run(server, "consume", "--queue", "q", "--follow", "--no-ack")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["id"] for line in result.output.splitlines()] == ["a"]
    assert all(b["wait_s"] == 20 and b["max_messages"] == 100 for b in server.bodies("POST", "/v1/queues/q/receive"))
    assert "Aborted" not in result.output


@pytest.mark.parametrize("args", [[], ["--queue", "q", "--topic", "t"], ["--topic", "t"], ["--subscription", "s"]])
def test_consume_needs_a_queue_or_a_subscription(args: list[str]) -> None:
    assert run(FakeServer({}), "consume", *args).exit_code == 2


# ---------------------------------------------------------------------------------------------------------
# errors


def test_a_problem_answer_is_one_line_on_stderr_and_exit_1() -> None:
    problem = {"type": "about:blank", "title": "Not found", "status": 404, "detail": "no queue orders"}
    server = FakeServer({("GET", "/v1/queues/orders"): answer(problem, 404)})
    result = run(server, "queue", "show", "orders")
    assert result.exit_code == 1
    assert result.stderr == "error: Not found: no queue orders\n"
    assert result.stdout == ""
    assert "Traceback" not in result.output


def test_an_unreachable_server_says_so() -> None:
    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    server = FakeServer({("GET", "/v1/queues"): refused})
    result = run(server, "--url", "http://127.0.0.1:9", "queue", "list")
    assert result.exit_code == 1
    assert result.stderr == "error: cannot reach http://127.0.0.1:9\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_untrusted_certificate_says_how_to_pass_the_ca_and_is_not_retried() -> None:
    def untrusted(request: httpx.Request) -> httpx.Response:
        cause = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
        cause.verify_message = "self-signed certificate in certificate chain"
        raise httpx.ConnectError(str(cause), request=request) from cause

    server = FakeServer({("GET", "/v1/queues"): untrusted})
    state = CliState(transport=httpx.MockTransport(server), retries=5)
    url = "https://127.0.0.1:8443"
    result = CliRunner().invoke(main, ["--token", "t", "--url", url, "queue", "list"], obj=state)
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: the certificate of {url} is not trusted (self-signed certificate")
    assert "--ca-file" in result.stderr and "MOM_CA_FILE" in result.stderr
    assert len(server.requests) == 1  # a retry cannot make a certificate trusted


# ---------------------------------------------------------------------------------------------------------
# the other client commands


def test_queue_create_sends_only_the_given_attributes() -> None:
    server = FakeServer({("PUT", "/v1/queues/orders"): answer({"name": "orders"}, 201)})
    args = ["queue", "create", "orders", "--max-deliveries", "5", "--dead-letter-queue", "dlq"]
    result = run(server, *args, "--message-ttl", "60")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"name": "orders"}
    assert server.bodies("PUT", "/v1/queues/orders") == [
        {"max_deliveries": 5, "dead_letter_queue": "dlq", "message_ttl_s": 60.0}
    ]


def test_topic_subscribe_takes_an_offset_or_a_name() -> None:
    path = "/v1/topics/events/subscriptions/audit"
    server = FakeServer({("PUT", path): answer({"name": "audit"}, 201)})
    assert run(server, "topic", "subscribe", "events", "audit", "--start", "12").exit_code == 0
    assert run(server, "topic", "subscribe", "events", "audit").exit_code == 0
    assert server.bodies("PUT", path) == [{"start": {"offset": 12}}, {"start": "latest"}]
    assert run(server, "topic", "subscribe", "events", "audit", "--start", "soon").exit_code == 2


def test_topic_read_prints_one_line_per_message() -> None:
    page = {
        "messages": [{"id": "a", "offset": 3, "body": 1}, {"id": "b", "offset": 4, "body": 2}],
        "next_offset": 5,
    }
    server = FakeServer({("GET", "/v1/topics/events/messages"): answer(page)})
    result = run(server, "topic", "read", "events", "--from-offset", "3", "--limit", "2")
    assert result.exit_code == 0, result.output
    assert [json.loads(line)["offset"] for line in result.output.splitlines()] == [3, 4]
    assert dict(server.requests[0].url.params) == {"from_offset": "3", "limit": "2"}


def test_token_uses_credentials_from_the_environment() -> None:
    grant = {"access_token": "jwt", "token_type": "Bearer", "expires_in": 60, "scope": "x"}
    server = FakeServer({("POST", "/v1/auth/token"): answer(grant)})
    env = {"MOM_USERNAME": "alice", "MOM_PASSWORD": "pw"}
    state = CliState(transport=httpx.MockTransport(server), retries=0)
    plain = CliRunner().invoke(main, ["token"], obj=state, env=env)
    assert plain.exit_code == 0, plain.output
    assert plain.output == "jwt\n"
    state = CliState(transport=httpx.MockTransport(server), retries=0)
    full = CliRunner().invoke(main, ["token", "--json"], obj=state, env=env)
    assert json.loads(full.output) == grant
    assert b"username=alice" in server.requests[0].content


def test_user_create_prompts_for_the_password_twice() -> None:
    server = FakeServer({("POST", "/v1/auth/users"): answer({"username": "bob", "scopes": []}, 201)})
    result = run(server, "user", "create", "bob", input="s3cret\ns3cret\n")
    assert result.exit_code == 0, result.output
    assert server.bodies("POST", "/v1/auth/users") == [{"username": "bob", "password": "s3cret"}]


def test_client_create_and_cluster_status() -> None:
    created = {"client_id": "svc", "client_secret": "xyz", "scopes": ["mom.read:*"]}
    status = {"node_id": "mom1", "transport": "grpc", "nodes": [], "destinations": []}
    server = FakeServer({("POST", "/v1/auth/clients"): answer(created, 201), ("GET", "/v1/cluster"): answer(status)})
    result = run(server, "client", "create", "--scope", "mom.read:*", "--client-id", "svc")
    assert json.loads(result.output) == created
    assert server.bodies("POST", "/v1/auth/clients") == [{"scopes": ["mom.read:*"], "client_id": "svc"}]
    assert json.loads(run(server, "cluster", "status").output) == status


# ---------------------------------------------------------------------------------------------------------
# help and serve


def _commands(group: click.Group, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    for name, command in group.commands.items():
        yield (*prefix, name), command
        if isinstance(command, click.Group):
            yield from _commands(command, (*prefix, name))


@pytest.mark.parametrize("path", [(), *(p for p, _ in _commands(main))], ids=lambda p: " ".join(p) or "mom")
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    command: click.Command = main
    for name in path:
        assert isinstance(command, click.Group)
        command = command.commands[name]
    assert command.get_short_help_str().strip()
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("Usage:")


@pytest.fixture
def fake_node(monkeypatch: pytest.MonkeyPatch) -> list[Settings]:
    """Replace mom.node with a module whose run_node records its settings instead of running."""
    ran: list[Settings] = []
    module = types.ModuleType("mom.node")
    module.run_node = ran.append  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mom.node", module)
    return ran


def test_serve_maps_flags_to_settings(fake_node: list[Settings]) -> None:
    args = [
        "serve",
        "--node-id",
        "n7",
        "--data-dir",
        "/tmp/n7",
        "--rest",
        "127.0.0.1:9001",
        "--transport",
        "zmq",
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    [settings] = fake_node
    assert (settings.node_id, str(settings.data_dir), str(settings.rest)) == (
        "n7",
        "/tmp/n7",
        "127.0.0.1:9001",
    )
    assert settings.cluster.transport == "zmq"


def test_serve_defaults_and_environment(fake_node: list[Settings]) -> None:
    assert CliRunner().invoke(main, ["serve"], env={"MOM_TRANSPORT": "zmq"}).exit_code == 0
    assert CliRunner().invoke(main, ["serve", "--transport", "grpc"], env={"MOM_TRANSPORT": "zmq"}).exit_code == 0
    default, overridden = fake_node
    assert (default.node_id, str(default.rest), default.cluster.transport) == (
        "mom1",
        "127.0.0.1:8080",
        "zmq",
    )
    assert overridden.cluster.transport == "grpc"


def test_serve_reports_bad_settings_with_exit_2(fake_node: list[Settings], tmp_path: Any) -> None:
    result = CliRunner().invoke(main, ["serve", "--rest", "nowhere"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: address 'nowhere' must look like HOST:PORT")
    missing = CliRunner().invoke(main, ["serve", "--config", str(tmp_path / "absent.toml")])
    assert missing.exit_code == 2
    assert "does not exist" in missing.stderr
    assert fake_node == []


def test_token_without_credentials_is_a_usage_error() -> None:
    server = FakeServer({})
    result = run(server, "token")
    assert result.exit_code == 2
    assert "--username and --password" in result.stderr
    assert server.requests == []


def test_mom_bench_offers_exactly_the_harness_scenarios_and_peers() -> None:
    from bench.runner import PEERS
    from bench.scenarios import SCENARIOS
    from mom.cli.bench import PEER_NAMES, SCENARIO_NAMES

    assert set(SCENARIO_NAMES) == set(SCENARIOS)
    assert set(PEER_NAMES) == set(PEERS)


def test_user_grant_revoke_list_and_delete() -> None:
    changed = {"subject": "user:bob", "scopes": ["mom.read:bob.*", "mom.read:orders.*"]}
    server = FakeServer(
        {
            ("POST", "/v1/auth/users/bob/grant"): answer(changed),
            ("POST", "/v1/auth/users/bob/revoke"): answer(changed),
            ("GET", "/v1/auth/users"): answer({"users": [{"username": "bob"}]}),
            ("DELETE", "/v1/auth/users/bob"): answer(None, 204),
        }
    )
    assert json.loads(run(server, "user", "grant", "bob", "mom.read:orders.*").output) == changed
    assert server.bodies("POST", "/v1/auth/users/bob/grant") == [{"scopes": ["mom.read:orders.*"]}]
    assert run(server, "user", "revoke", "bob", "mom.write:x").exit_code == 0
    assert server.bodies("POST", "/v1/auth/users/bob/revoke") == [{"scopes": ["mom.write:x"]}]
    assert json.loads(run(server, "user", "list").output) == [{"username": "bob"}]
    assert run(server, "user", "delete", "bob").exit_code == 0


# ---------------------------------------------------------------------------------------------------------
# cluster membership


def test_cluster_membership_commands_send_the_admin_requests() -> None:
    member = {"id": "mom4", "rest_url": "http://h:1", "replication": "h:2", "state": "active", "replicas": 0}
    server = FakeServer(
        {
            ("POST", "/v1/cluster/nodes"): answer(member, 201),
            ("POST", "/v1/cluster/nodes/mom2/drain"): answer({**member, "id": "mom2", "state": "draining"}),
            ("DELETE", "/v1/cluster/nodes/mom2"): lambda request: httpx.Response(204),
            ("GET", "/v1/cluster/nodes"): answer({"nodes": [member], "moves": []}),
        }
    )
    added = run(server, "cluster", "add-node", "mom4", "--rest", "http://h:1", "--replication", "h:2")
    assert added.exit_code == 0, added.output
    assert server.bodies("POST", "/v1/cluster/nodes") == [{"id": "mom4", "rest": "http://h:1", "replication": "h:2"}]
    assert json.loads(run(server, "cluster", "drain", "mom2").output)["state"] == "draining"
    removed = run(server, "cluster", "remove-node", "mom2")
    assert removed.exit_code == 0 and "removed mom2" in removed.output
    assert json.loads(run(server, "cluster", "nodes").output)["nodes"] == [member]
