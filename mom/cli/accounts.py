"""Users, tokens and OAuth clients."""

from __future__ import annotations

import click

from mom.cli._app import (
    _client,
    _show,
    _state,
    main,
)


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
