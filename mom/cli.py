"""The `mom` command: run a node (`mom serve`) or talk to one over the REST API with `mom.client.Client`."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import click
import httpx

from mom.client import Client
from mom.client._protocol import make_message
from mom.errors import InvalidInput, MomError

PUBLISH_BATCH = 100
"""Messages per publish request: enough to amortise a round trip, few enough to stay under size limits."""

FOLLOW_WAIT_S = 20.0
"""The long poll of `mom consume --follow` when --wait is not given: the longest the API allows."""


@dataclass
class CliState:
    """What the group's options resolve to, and the client built from them on first use.

    Tests pass one with a `transport` (an `httpx.MockTransport`) as click's `obj`.
    """

    transport: httpx.BaseTransport | None = None
    retries: int = 5
    url: str = "http://127.0.0.1:8080"
    token: str | None = None
    username: str | None = None
    password: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    _client: Client | None = None

    def client(self) -> Client:
        if self._client is None:
            self._client = Client(
                self.url,
                token=self.token,
                username=self.username,
                password=self.password,
                client_id=self.client_id,
                client_secret=self.client_secret,
                retries=self.retries,
                transport=self.transport,
            )
            click.get_current_context().call_on_close(self._client.close)
        return self._client


class _Main(click.Group):
    """Turns mom errors and unreachable servers into one line on stderr and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MomError as exc:
            _fail(f"{exc.title}: {exc.detail}")
        except (httpx.ConnectError, httpx.ConnectTimeout):
            _fail(f"cannot reach {_url(ctx)}")
        except httpx.TimeoutException:
            _fail(f"{_url(ctx)} did not answer in time")
        except httpx.HTTPError as exc:
            _fail(f"request to {_url(ctx)} failed: {exc or type(exc).__name__}")


def _url(ctx: click.Context) -> str:
    state = ctx.find_object(CliState)
    return state.url if state is not None else "the server"


def _fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    raise click.exceptions.Exit(code)


def _state() -> CliState:
    return click.get_current_context().ensure_object(CliState)


def _client() -> Client:
    return _state().client()


def _jsonable(value: Any) -> Any:
    """Bytes bodies back to `body_base64`, as the API shows them, so every output line is JSON."""
    if isinstance(value, dict):
        out = {k: _jsonable(v) for k, v in value.items() if not (k == "body" and isinstance(v, bytes))}
        if isinstance(value.get("body"), bytes):
            out["body_base64"] = base64.b64encode(value["body"]).decode("ascii")
        return out
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def _show(value: Any) -> None:
    click.echo(json.dumps(_jsonable(value), indent=2))


def _line(value: Any) -> None:
    click.echo(json.dumps(_jsonable(value), separators=(",", ":")))


def _given(**attrs: Any) -> dict[str, Any]:
    """Only the attributes given on the command line, so that the server's defaults apply to the rest."""
    return {k: v for k, v in attrs.items() if v is not None}


@click.group(cls=_Main)
@click.option("--url", envvar="MOM_URL", default="http://127.0.0.1:8080", show_default=True, help="REST URL.")
@click.option("--token", envvar="MOM_TOKEN", help="Bearer token (else one is fetched with the credentials).")
@click.option("--username", envvar="MOM_USERNAME", help="User for the password grant.")
@click.option("--password", envvar="MOM_PASSWORD", help="Password for the password grant.")
@click.option("--client-id", envvar="MOM_CLIENT_ID", help="OAuth client for the client-credentials grant.")
@click.option("--client-secret", envvar="MOM_CLIENT_SECRET", help="Secret of --client-id.")
def main(
    url: str,
    token: str | None,
    username: str | None,
    password: str | None,
    client_id: str | None,
    client_secret: str | None,
) -> None:
    """mom: replicated queues and topics behind a REST API.

    \b
    Examples:
      mom serve
      mom --username alice --password secret queue create orders
      echo '{"id": 1}' | mom publish --queue orders
      mom consume --queue orders --follow
    """
    state = _state()
    state.url = url
    state.token, state.username, state.password = token, username, password
    state.client_id, state.client_secret = client_id, client_secret


# ---------------------------------------------------------------------------------------------------------
# serve


@main.command()
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), help="TOML file.")
@click.option("--node-id", help="This node's id (its entry in [[cluster.nodes]]).")
@click.option("--data-dir", help="Where the node keeps its log (default var/mom, or var/ID in a cluster).")
@click.option("--rest", help="HOST:PORT of the REST API (default 127.0.0.1:8080).")
@click.option("--transport", type=click.Choice(["grpc", "zmq"]), help="Node-to-node transport.")
def serve(
    config_file: Path | None,
    node_id: str | None,
    data_dir: str | None,
    rest: str | None,
    transport: str | None,
) -> None:
    """Run one node until Ctrl-C or SIGTERM.

    \b
    Examples:
      mom serve                                   # single node on 127.0.0.1:8080
      mom serve --config cluster.toml --node-id mom2
    """
    from mom.config import load_settings

    flags = {"node.id": node_id, "node.data_dir": data_dir, "node.rest": rest, "cluster.transport": transport}
    try:
        settings = load_settings(config_file, env=os.environ, flags=flags)
    except InvalidInput as exc:
        _fail(exc.detail, code=2)
    from mom.node import run_node

    run_node(settings)


# ---------------------------------------------------------------------------------------------------------
# auth


@main.group()
def user() -> None:
    """Manage users."""


@user.command("create")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True, help="Asked if not given.")
def user_create(username: str, password: str) -> None:
    """Register a user (needs open registration on the server).

    Example: mom user create alice
    """
    _show(_client().register_user(username, password))


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the whole token answer, not just the token.")
def token(as_json: bool) -> None:
    """Get an access token with --username/--password or --client-id/--client-secret.

    Example: export MOM_TOKEN=$(mom --username alice --password secret token)
    """
    state = _state()
    if not (state.username and state.password) and not (state.client_id and state.client_secret):
        raise click.UsageError("give --username and --password, or --client-id and --client-secret")
    grant = state.client().token()
    if as_json:
        _show(grant)
    else:
        click.echo(grant["access_token"])


@main.group("client")
def client_group() -> None:
    """Manage OAuth clients (for services using the client-credentials grant)."""


@client_group.command("create")
@click.option("--scope", "scopes", multiple=True, required=True, help="A scope, e.g. mom.write:orders.")
@click.option("--client-id", help="The id to give it (default: generated).")
def client_create(scopes: tuple[str, ...], client_id: str | None) -> None:
    """Create an OAuth client (admin); prints its secret, which is shown only once.

    Example: mom client create --scope 'mom.read:orders*' --scope 'mom.write:orders*'
    """
    _show(_client().create_client(list(scopes), client_id=client_id))


# ---------------------------------------------------------------------------------------------------------
# queues and topics


@main.group()
def queue() -> None:
    """Declare, inspect and delete queues."""


@queue.command("create")
@click.argument("name")
@click.option("--visibility-timeout", type=float, help="Seconds a received message stays leased.")
@click.option("--max-deliveries", type=int, help="Deliveries before a message is dead-lettered.")
@click.option("--dead-letter-queue", help="Where messages go after --max-deliveries.")
@click.option("--max-length", type=int, help="Most messages the queue holds; publishing beyond is refused.")
@click.option("--message-ttl", type=float, help="Seconds before an unconsumed message is dropped.")
@click.option("--replication-factor", type=int, help="Replicas of the queue (default: the cluster's).")
def queue_create(
    name: str,
    visibility_timeout: float | None,
    max_deliveries: int | None,
    dead_letter_queue: str | None,
    max_length: int | None,
    message_ttl: float | None,
    replication_factor: int | None,
) -> None:
    """Declare a queue (succeeds if it exists with the same attributes).

    Example: mom queue create orders --max-deliveries 5 --dead-letter-queue orders.dlq
    """
    attrs = _given(
        visibility_timeout_s=visibility_timeout,
        max_deliveries=max_deliveries,
        dead_letter_queue=dead_letter_queue,
        max_length=max_length,
        message_ttl_s=message_ttl,
        replication_factor=replication_factor,
    )
    _show(_client().create_queue(name, **attrs))


@queue.command("list")
def queue_list() -> None:
    """List the queues with their stats."""
    _show(_client().list_queues())


@queue.command("show")
@click.argument("name")
def queue_show(name: str) -> None:
    """Show a queue's attributes, stats, leader and replicas."""
    _show(_client().get_queue(name))


@queue.command("delete")
@click.argument("name")
def queue_delete(name: str) -> None:
    """Delete a queue and its messages (its creator or an admin)."""
    _client().delete_queue(name)


@main.group()
def topic() -> None:
    """Declare, inspect, subscribe to and replay topics."""


@topic.command("create")
@click.argument("name")
@click.option("--retention", type=float, help="Seconds messages are retained.")
@click.option("--retention-bytes", type=int, help="Bytes of messages retained.")
@click.option("--replication-factor", type=int, help="Replicas of the topic (default: the cluster's).")
def topic_create(
    name: str, retention: float | None, retention_bytes: int | None, replication_factor: int | None
) -> None:
    """Declare a topic (succeeds if it exists with the same attributes).

    Example: mom topic create events --retention 86400
    """
    attrs = _given(retention_s=retention, retention_bytes=retention_bytes, replication_factor=replication_factor)
    _show(_client().create_topic(name, **attrs))


@topic.command("list")
def topic_list() -> None:
    """List the topics with their stats."""
    _show(_client().list_topics())


@topic.command("show")
@click.argument("name")
def topic_show(name: str) -> None:
    """Show a topic's attributes, offsets and subscriptions."""
    _show(_client().get_topic(name))


@topic.command("delete")
@click.argument("name")
def topic_delete(name: str) -> None:
    """Delete a topic, its retained log and its subscriptions."""
    _client().delete_topic(name)


def _start(value: str) -> str | int:
    if value in ("latest", "earliest"):
        return value
    if value.isdigit():
        return int(value)
    raise click.BadParameter("must be latest, earliest or an offset", param_hint="--start")


@topic.command("subscribe")
@click.argument("topic_name", metavar="TOPIC")
@click.argument("subscription")
@click.option("--start", default="latest", show_default=True, help="latest, earliest or an offset.")
@click.option("--visibility-timeout", type=float, help="Seconds a received message stays leased.")
@click.option("--max-deliveries", type=int, help="Deliveries before a message is dead-lettered.")
@click.option("--dead-letter-queue", help="Where messages go after --max-deliveries.")
def topic_subscribe(
    topic_name: str,
    subscription: str,
    start: str,
    visibility_timeout: float | None,
    max_deliveries: int | None,
    dead_letter_queue: str | None,
) -> None:
    """Create a durable subscription to a topic.

    Example: mom topic subscribe events audit --start earliest
    """
    attrs = _given(
        visibility_timeout_s=visibility_timeout,
        max_deliveries=max_deliveries,
        dead_letter_queue=dead_letter_queue,
    )
    _show(_client().create_subscription(topic_name, subscription, start=_start(start), **attrs))


@topic.command("subscriptions")
@click.argument("topic_name", metavar="TOPIC")
def topic_subscriptions(topic_name: str) -> None:
    """List the subscriptions of a topic."""
    _show(_client().list_subscriptions(topic_name))


@topic.command("unsubscribe")
@click.argument("topic_name", metavar="TOPIC")
@click.argument("subscription")
def topic_unsubscribe(topic_name: str, subscription: str) -> None:
    """Delete a subscription."""
    _client().delete_subscription(topic_name, subscription)


@topic.command("read")
@click.argument("topic_name", metavar="TOPIC")
@click.option("--from-offset", type=click.IntRange(min=0), default=0, show_default=True)
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
def topic_read(topic_name: str, from_offset: int, limit: int) -> None:
    """Replay a topic's retained log, one JSON line per message, without a subscription.

    Example: mom topic read events --from-offset 1000 --limit 10
    """
    for message in _client().read_topic(topic_name, from_offset=from_offset, limit=limit)["messages"]:
        _line(message)


# ---------------------------------------------------------------------------------------------------------
# messages


def _body(text: str) -> Any:
    """A JSON value if the text is one, else the text itself as a string."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _header(_ctx: click.Context, _param: click.Parameter, values: Sequence[str]) -> dict[str, str]:
    headers = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} must look like key=value")
        headers[key] = value
    return headers


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _stdin_bodies() -> Iterator[Any]:
    for line in sys.stdin:
        text = line.rstrip("\r\n")
        if text.strip():
            yield _body(text)


@main.command()
@click.argument("bodies", metavar="[BODY]...", nargs=-1)
@click.option("--queue", "queue_name", help="Publish to this queue.")
@click.option("--topic", "topic_name", help="Publish to this topic.")
@click.option("--header", "headers", multiple=True, callback=_header, help="A header key=value (repeatable).")
@click.option("--delay", type=click.FloatRange(min=0), default=0, help="Seconds before delivery (queues).")
@click.option("--dedup-id", help="Deduplication id (one BODY only).")
def publish(
    bodies: tuple[str, ...],
    queue_name: str | None,
    topic_name: str | None,
    headers: dict[str, str],
    delay: float,
    dedup_id: str | None,
) -> None:
    """Publish messages and print their ids, one per line.

    Each BODY is a JSON value, or a plain string if it is not valid JSON. Without BODY, every line of
    stdin is one message, sent in batches of 100.

    \b
    Examples:
      mom publish --queue orders '{"id": 1}' '{"id": 2}'
      mom publish --topic events --header source=cli hello
      cat orders.jsonl | mom publish --queue orders
    """
    if (queue_name is None) == (topic_name is None):
        raise click.UsageError("give exactly one of --queue or --topic")
    if dedup_id is not None and len(bodies) != 1:
        raise click.UsageError("--dedup-id needs exactly one BODY")
    client = _client()
    values = (_body(b) for b in bodies) if bodies else _stdin_bodies()
    for batch in _batches(values, PUBLISH_BATCH):
        messages = [make_message(body, headers, delay, dedup_id) for body in batch]
        for published in client.publish_batch(messages, queue=queue_name, topic=topic_name):
            click.echo(published["id"])


@main.command()
@click.option("--queue", "queue_name", help="Consume from this queue.")
@click.option("--topic", "topic_name", help="Consume from this topic (with --subscription).")
@click.option("--subscription", help="The subscription of --topic to consume from.")
@click.option("--max", "max_messages", type=click.IntRange(min=1), help="Stop after N (default 1; none with --follow).")
@click.option("--wait", type=click.FloatRange(0, 20), help="Seconds to long-poll (default 0, 20 with --follow).")
@click.option("--follow", is_flag=True, help="Keep receiving until Ctrl-C (or --max).")
@click.option("--no-ack", is_flag=True, help="Leave the messages leased; they are delivered again later.")
def consume(
    queue_name: str | None,
    topic_name: str | None,
    subscription: str | None,
    max_messages: int | None,
    wait: float | None,
    follow: bool,
    no_ack: bool,
) -> None:
    """Receive messages, print one JSON line each, then ack them.

    \b
    Examples:
      mom consume --queue orders --max 10 --wait 5
      mom consume --topic events --subscription audit --follow
    """
    if (queue_name is None) == (topic_name is None) or (topic_name is None) != (subscription is None):
        raise click.UsageError("give --queue, or --topic with --subscription")
    limit = max_messages if max_messages is not None or follow else 1
    wait_s = wait if wait is not None else (FOLLOW_WAIT_S if follow else 0.0)
    client = _client()
    seen = 0
    try:
        while limit is None or seen < limit:
            want = min(100, limit - seen) if limit is not None else 100
            messages = client.receive(
                queue=queue_name,
                topic=topic_name,
                subscription=subscription,
                max_messages=want,
                wait_s=wait_s,
            )
            for message in messages:
                _line(message)
            sys.stdout.flush()
            if messages and not no_ack:
                receipts = [m["receipt"] for m in messages]
                client.ack(receipts, queue=queue_name, topic=topic_name, subscription=subscription)
            seen += len(messages)
            if not messages and not follow:
                break
    except KeyboardInterrupt:
        return


# ---------------------------------------------------------------------------------------------------------
# cluster


@main.group()
def cluster() -> None:
    """Look at the cluster."""


@cluster.command("status")
def cluster_status() -> None:
    """Show the nodes, the transport, and each destination's leader, replicas and lag."""
    _show(_client().cluster())
