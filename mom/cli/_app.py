"""The `mom` command group, its global options and the helpers its commands share."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, NoReturn

import click
import httpx

from mom.client import Client
from mom.client._protocol import untrusted_certificate
from mom.errors import MomError

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
    ca_file: str | None = None
    _client: Client | None = None

    def can_renew(self) -> bool:
        """Whether the credentials can fetch a new token (a given --token alone cannot)."""
        return bool((self.username and self.password) or (self.client_id and self.client_secret))

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
                ca_file=self.ca_file,
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
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            reason = untrusted_certificate(exc)
            if reason is not None:
                _fail(
                    f"the certificate of {_url(ctx)} is not trusted ({reason}): pass the CA that signed it with "
                    "--ca-file (the ca.pem of `mom certs init`, e.g. --ca-file certs/ca.pem) or MOM_CA_FILE"
                )
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
@click.option(
    "--url",
    envvar="MOM_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    help="REST URL of a node, or of several separated by commas (the client moves on when one fails).",
)
@click.option("--token", envvar="MOM_TOKEN", help="Bearer token (else one is fetched with the credentials).")
@click.option("--username", envvar="MOM_USERNAME", help="User for the password grant.")
@click.option("--password", envvar="MOM_PASSWORD", help="Password for the password grant.")
@click.option("--client-id", envvar="MOM_CLIENT_ID", help="OAuth client for the client-credentials grant.")
@click.option("--client-secret", envvar="MOM_CLIENT_SECRET", help="Secret of --client-id.")
@click.option(
    "--ca-file",
    envvar="MOM_CA_FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="Trust only this CA for an https --url (the ca.pem of `mom certs init`).",
)
def main(
    url: str,
    token: str | None,
    username: str | None,
    password: str | None,
    client_id: str | None,
    client_secret: str | None,
    ca_file: str | None,
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
    state.ca_file = ca_file
