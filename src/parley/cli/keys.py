"""`parley keys create|list|update|revoke`: API keys, straight in the store."""

from __future__ import annotations

from pathlib import Path

import click

from parley.cli.shared import (
    config_option,
    data_dir_option,
    json_option,
    read_settings,
    with_database,
)


@click.group()
def keys() -> None:
    """Manage API keys."""


@keys.command("create")
@click.option("--name", required=True, help="A label for the key.")
@click.option("--tier", default="default", show_default=True, help="Rate-limit tier.")
@click.option("--admin", is_flag=True, help="An admin key (admin endpoints only).")
@click.option(
    "--browser-access/--no-browser-access",
    default=True,
    show_default=True,
    help="Whether pages in a browser may call the API with this key.",
)
@data_dir_option
@config_option
def create(
    name: str,
    tier: str,
    admin: bool,
    browser_access: bool,
    data_dir: Path | None,
    config: Path | None,
) -> None:
    """Create a key and print its secret (shown only once)."""
    from parley.store.keys import KeyStore

    settings = read_settings(config, data_dir=data_dir)
    created = with_database(
        settings,
        lambda db: KeyStore(db).create(name, tier=tier, admin=admin, browser_access=browser_access),
    )
    click.echo(f"Created key {created.key.id} ({name}); the secret is shown only once:", err=True)
    click.echo(created.secret)


@keys.command("list")
@json_option
@data_dir_option
@config_option
def list_(as_json: bool, data_dir: Path | None, config: Path | None) -> None:
    """List keys, newest first (never their secrets)."""
    from parley.cli import render
    from parley.store.keys import KeyStore

    settings = read_settings(config, data_dir=data_dir)
    render.show_keys(with_database(settings, lambda db: KeyStore(db).list()), as_json=as_json)


@keys.command("update")
@click.argument("key_id")
@click.option("--name", help="A new label.")
@click.option(
    "--browser-access/--no-browser-access",
    default=None,
    help="Allow or refuse requests from pages in a browser.",
)
@data_dir_option
@config_option
def update(
    key_id: str,
    name: str | None,
    browser_access: bool | None,
    data_dir: Path | None,
    config: Path | None,
) -> None:
    """Rename a key or switch its browser access; every server applies it at once."""
    from parley.store.keys import KeyNotFound, KeyStore

    settings = read_settings(config, data_dir=data_dir)
    try:
        key = with_database(
            settings,
            lambda db: KeyStore(db).update(key_id, name=name, browser_access=browser_access),
        )
    except KeyNotFound:
        raise click.ClickException(f"no API key with id {key_id}") from None
    access = "allowed" if key.browser_access else "refused"
    click.echo(f"Key {key.id} ({key.name}): browser access {access}.", err=True)
    click.echo(key.id)


@keys.command("revoke")
@click.argument("key_id")
@data_dir_option
@config_option
def revoke(key_id: str, data_dir: Path | None, config: Path | None) -> None:
    """Revoke (archive) a key: every server refuses it from its next request on."""
    from parley.store.keys import KeyNotFound, KeyStore

    settings = read_settings(config, data_dir=data_dir)
    try:
        key = with_database(settings, lambda db: KeyStore(db).revoke(key_id))
    except KeyNotFound:
        raise click.ClickException(f"no API key with id {key_id}") from None
    click.echo(f"Revoked key {key.id} ({key.name}).", err=True)
    click.echo(key.id)
