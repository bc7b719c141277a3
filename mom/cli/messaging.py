"""Publishing and consuming."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import click

from mom.cli._app import (
    FOLLOW_WAIT_S,
    PUBLISH_BATCH,
    _client,
    _line,
    _state,
    main,
)
from mom.client._protocol import make_message
from mom.errors import Unauthorized


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
@click.option("--ids", "print_ids", is_flag=True, help="Print each message's id, one per line, not a summary.")
def publish(
    bodies: tuple[str, ...],
    queue_name: str | None,
    topic_name: str | None,
    headers: dict[str, str],
    delay: float,
    dedup_id: str | None,
    print_ids: bool,
) -> None:
    """Publish messages, then print how many went and how fast (--ids: their ids instead).

    Each BODY is a JSON value, or a plain string if it is not valid JSON. Without BODY, every line of
    stdin is one message, sent in batches of 100; on a terminal a progress line counts them as they go.

    \b
    Examples:
      mom publish --queue orders '{"id": 1}' '{"id": 2}'
      mom publish --topic events --header source=cli hello
      cat orders.jsonl | mom publish --queue orders
      mom publish --queue orders --ids '{"id": 3}'
    """
    if (queue_name is None) == (topic_name is None):
        raise click.UsageError("give exactly one of --queue or --topic")
    if dedup_id is not None and len(bodies) != 1:
        raise click.UsageError("--dedup-id needs exactly one BODY")
    client = _client()
    values = (_body(b) for b in bodies) if bodies else _stdin_bodies()
    progress = _Progress(enabled=not print_ids and _is_terminal(sys.stderr))
    count = 0
    for batch in _batches(values, PUBLISH_BATCH):
        messages = [make_message(body, headers, delay, dedup_id) for body in batch]
        for published in client.publish_batch(messages, queue=queue_name, topic=topic_name):
            count += 1
            if print_ids:
                click.echo(published["id"])
        progress.show(count)
    progress.done()
    if not print_ids:
        where = f"queue {queue_name}" if queue_name is not None else f"topic {topic_name}"
        click.echo(f"published {count} message{'' if count == 1 else 's'} to {where}{progress.summary(count)}")


def _is_terminal(stream: Any) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class _Progress:
    """A one-line counter on stderr while a long input is published (a terminal only; pipes and logs stay clean)."""

    def __init__(self, *, enabled: bool) -> None:
        self._enabled = enabled
        self._started = time.monotonic()
        self._shown = False

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def show(self, count: int) -> None:
        if self._enabled and count > PUBLISH_BATCH:  # a long input: more than one batch
            click.echo(f"\rpublishing: {count} messages{self.summary(count)}", err=True, nl=False)
            self._shown = True

    def done(self) -> None:
        if self._shown:
            click.echo("\r\033[K", err=True, nl=False)

    def summary(self, count: int) -> str:
        elapsed = self.elapsed()
        if elapsed <= 0 or count == 0:
            return ""
        return f" in {elapsed:.2f} s ({count / elapsed:,.0f}/s)"


@main.command()
@click.option("--queue", "queue_name", help="Consume from this queue.")
@click.option("--topic", "topic_name", help="Consume from this topic (with --subscription).")
@click.option("--subscription", help="The subscription of --topic to consume from.")
@click.option("--max", "max_messages", type=click.IntRange(min=1), help="Stop after N (default 1; none with --follow).")
@click.option(
    "--wait", type=click.FloatRange(0, 20), help="Seconds to long-poll (default 0; 20 with --follow --no-ack)."
)
@click.option("--follow", is_flag=True, help="Keep consuming until Ctrl-C (or --max), pushed over the stream.")
@click.option(
    "--prefetch",
    type=click.IntRange(1, 10_000),
    default=100,
    show_default=True,
    help="With --follow: most messages delivered and not yet acked.",
)
@click.option("--no-ack", is_flag=True, help="Leave the messages leased; they are delivered again later.")
def consume(
    queue_name: str | None,
    topic_name: str | None,
    subscription: str | None,
    max_messages: int | None,
    wait: float | None,
    follow: bool,
    prefetch: int,
    no_ack: bool,
) -> None:
    """Receive messages, print one JSON line each, then ack them.

    With --follow, messages are pushed over the streaming WebSocket (GET /v1/stream) with at most --prefetch
    of them unacked, and acks leave in batches; --wait does not apply. With --follow --no-ack, it long-polls
    over REST instead, since unacked messages would fill the prefetch window.

    \b
    Examples:
      mom consume --queue orders --max 10 --wait 5
      mom consume --topic events --subscription audit --follow
    """
    if (queue_name is None) == (topic_name is None) or (topic_name is None) != (subscription is None):
        raise click.UsageError("give --queue, or --topic with --subscription")
    limit = max_messages if max_messages is not None or follow else 1
    try:
        if follow and not no_ack:
            _follow(queue_name, topic_name, subscription, limit, prefetch)
        else:
            _poll(queue_name, topic_name, subscription, limit, wait, follow, no_ack)
    except KeyboardInterrupt:
        return


def _poll(
    queue_name: str | None,
    topic_name: str | None,
    subscription: str | None,
    limit: int | None,
    wait: float | None,
    follow: bool,
    no_ack: bool,
) -> None:
    """Receive (long-polling up to --wait) and ack over REST, 100 at a time at most."""
    wait_s = wait if wait is not None else (FOLLOW_WAIT_S if follow else 0.0)
    client = _client()
    seen = 0
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


def _follow(
    queue_name: str | None, topic_name: str | None, subscription: str | None, limit: int | None, prefetch: int
) -> None:
    """Consume over the stream; a line is printed (and flushed) before its ack is queued.

    The socket ends when its token expires (401): with credentials, a new token is fetched and the
    subscription opened again; the messages leased meanwhile come back after their visibility timeout.
    """
    client = _client()
    seen = 0
    window = prefetch if limit is None else min(prefetch, limit)
    while True:
        seen_before = seen
        try:
            with client.consume(queue=queue_name, topic=topic_name, subscription=subscription, prefetch=window) as sub:
                for message in sub:
                    _line(message)
                    sys.stdout.flush()
                    sub.ack_nowait(message["receipt"])
                    seen += 1
                    if limit is not None and seen >= limit:
                        return
        except Unauthorized:
            if seen == seen_before or not _state().can_renew():
                raise  # refused at once: not an expiry, or no way to a new token
            client.token()
