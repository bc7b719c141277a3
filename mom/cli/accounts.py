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
    """Register a user; it may use destinations named `<username>.*`.

    With open registration off (the default of `mom serve`) give an admin's credentials.

    Example: mom user create alice
    """
    state = _state()
    admin = state.token or (state.username and state.password) or (state.client_id and state.client_secret)
    client = _client()
    _show(client.create_user(username, password) if admin else client.register_user(username, password))


@user.command("list")
def user_list() -> None:
    """List users and their scopes (admin).

    Example: mom --username admin --password ... user list
    """
    _show(_client().list_accounts("users"))


@user.command("grant")
@click.argument("username")
@click.argument("scopes", nargs=-1, required=True)
def user_grant(username: str, scopes: tuple[str, ...]) -> None:
    """Give a user more scopes (admin), e.g. read on every queue of a team.

    Example: mom user grant alice 'mom.read:orders.*' 'mom.write:orders.*'
    """
    _show(_client().grant(username, list(scopes)))


@user.command("revoke")
@click.argument("username")
@click.argument("scopes", nargs=-1, required=True)
def user_revoke(username: str, scopes: tuple[str, ...]) -> None:
    """Take scopes from a user (admin); its current tokens stop working.

    Example: mom user revoke alice 'mom.write:orders.*'
    """
    _show(_client().revoke(username, list(scopes)))


@user.command("delete")
@click.argument("username")
def user_delete(username: str) -> None:
    """Delete a user (admin); its tokens stop working on every node. Its destinations stay.

    Example: mom user delete alice
    """
    _client().delete_account(username)


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


@client_group.command("list")
def client_list() -> None:
    """List OAuth clients and their scopes (admin)."""
    _show(_client().list_accounts("clients"))


@client_group.command("grant")
@click.argument("client_id")
@click.argument("scopes", nargs=-1, required=True)
def client_grant(client_id: str, scopes: tuple[str, ...]) -> None:
    """Give a client more scopes (admin).

    Example: mom client grant billing 'mom.read:invoices.*'
    """
    _show(_client().grant(client_id, list(scopes), kind="clients"))


@client_group.command("revoke")
@click.argument("client_id")
@click.argument("scopes", nargs=-1, required=True)
def client_revoke(client_id: str, scopes: tuple[str, ...]) -> None:
    """Take scopes from a client (admin); its current tokens stop working."""
    _show(_client().revoke(client_id, list(scopes), kind="clients"))


@client_group.command("delete")
@click.argument("client_id")
def client_delete(client_id: str) -> None:
    """Delete a client (admin); its tokens stop working on every node."""
    _client().delete_account(client_id, kind="clients")
