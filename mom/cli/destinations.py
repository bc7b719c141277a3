"""Queues, topics and subscriptions."""

from __future__ import annotations

import click

from mom.cli._app import (
    _client,
    _given,
    _line,
    _show,
    main,
)


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
