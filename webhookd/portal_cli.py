"""``webhookd portal``: tokens that open the vendor portal (and the admin API) for one vendor."""

from __future__ import annotations

import time

import click

from webhookd.cli import fail
from webhookd.config import Settings
from webhookd.portal_tokens import DEFAULT_TTL_S, MAX_TTL_S, issue


@click.group()
def portal() -> None:
    """The vendor portal, served by the admin API at /portal/."""


@portal.command("token")
@click.argument("vendor_id")
@click.option(
    "--ttl",
    "ttl_s",
    type=click.IntRange(1, MAX_TTL_S),
    default=DEFAULT_TTL_S,
    show_default=True,
    help=f"Seconds the token is valid (at most {MAX_TTL_S}, 7 days).",
)
@click.pass_obj
def portal_token(settings: Settings, vendor_id: str, ttl_s: int) -> None:
    """Print a token for VENDOR_ID: a bearer token of the admin API scoped to that vendor,
    which also logs in to the portal. Signed with a key derived from admin.token: changing
    admin.token revokes every token issued."""
    if not settings.admin.token:
        fail("admin.token is not set: portal tokens are signed with a key derived from it")
    try:
        click.echo(
            issue(vendor_id, admin_token=settings.admin.token, now_s=time.time(), ttl_s=ttl_s)
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'VENDOR_ID'") from None
