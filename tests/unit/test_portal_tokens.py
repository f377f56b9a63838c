"""Portal tokens: issued for one vendor, verified only under the admin token that issued
them, refused once expired or changed in any way."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from webhookd.cli import cli
from webhookd.portal_tokens import (
    DEFAULT_TTL_S,
    MAX_TTL_S,
    PREFIX,
    InvalidPortalToken,
    PortalClaims,
    issue,
    verify,
)

ADMIN = "admin-token"
NOW = 1_800_000_000.0


def test_a_token_names_its_vendor_until_it_expires() -> None:
    token = issue("v_1", admin_token=ADMIN, now_s=NOW, ttl_s=60)
    assert token.startswith(PREFIX) and ADMIN not in token
    assert verify(token, admin_token=ADMIN, now_s=NOW + 59) == PortalClaims("v_1", int(NOW) + 60)
    with pytest.raises(InvalidPortalToken, match="expired"):
        verify(token, admin_token=ADMIN, now_s=NOW + 60)


def test_another_admin_token_does_not_accept_it() -> None:
    token = issue("v_1", admin_token=ADMIN, now_s=NOW)
    with pytest.raises(InvalidPortalToken, match="signature"):
        verify(token, admin_token="rotated", now_s=NOW)


def test_a_payload_naming_another_vendor_is_refused() -> None:
    token = issue("v_1", admin_token=ADMIN, now_s=NOW)
    mac = token.split(".")[1]
    forged = base64.urlsafe_b64encode(json.dumps({"v": "v_2", "exp": 2**40}).encode())
    with pytest.raises(InvalidPortalToken, match="signature"):
        verify(f"{PREFIX}{forged.decode().rstrip('=')}.{mac}", admin_token=ADMIN, now_s=NOW)


@given(position=st.integers(min_value=0), replacement=st.sampled_from("Aa0_-.=x"))
def test_any_changed_character_is_refused(position: int, replacement: str) -> None:
    token = issue("vendor_42", admin_token=ADMIN, now_s=NOW)
    position %= len(token)
    changed = token[:position] + replacement + token[position + 1 :]
    if changed == token:
        return
    with pytest.raises(InvalidPortalToken):
        verify(changed, admin_token=ADMIN, now_s=NOW)


@pytest.mark.parametrize("offered", ["", "wpt_", "wpt_.", "wpt_a.b.c", "wpt_!!.??", "x" * 2000])
def test_malformed_tokens_are_refused(offered: str) -> None:
    with pytest.raises(InvalidPortalToken):
        verify(offered, admin_token=ADMIN, now_s=NOW)


def test_ttl_and_vendor_are_checked_when_issued() -> None:
    with pytest.raises(ValueError, match="ttl"):
        issue("v_1", admin_token=ADMIN, now_s=NOW, ttl_s=MAX_TTL_S + 1)
    with pytest.raises(ValueError, match="vendor id"):
        issue("no spaces", admin_token=ADMIN, now_s=NOW)


def write(tmp_path: Path, admin: str) -> Path:
    path = tmp_path / "webhookd.toml"
    path.write_text(f'[admin]\ntoken = "{admin}"\n' if admin else "")
    return path


def test_the_portal_token_command_prints_a_token_the_admin_token_verifies(tmp_path: Path) -> None:
    config = write(tmp_path, ADMIN)
    result = CliRunner().invoke(cli, ["--config", str(config), "portal", "token", "v_1"])
    assert result.exit_code == 0, result.output
    now_s = time.time()
    claims = verify(result.output.strip(), admin_token=ADMIN, now_s=now_s)
    assert claims.vendor == "v_1" and claims.expires_s >= now_s + DEFAULT_TTL_S - 5
    short = CliRunner().invoke(
        cli, ["--config", str(config), "portal", "token", "v_1", "--ttl", "5"]
    )
    expiry = verify(short.output.strip(), admin_token=ADMIN, now_s=now_s).expires_s
    assert expiry < claims.expires_s - DEFAULT_TTL_S + 60


def test_the_portal_token_command_needs_an_admin_token(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(write(tmp_path, "")), "portal", "token", "v"])
    assert result.exit_code == 1
    assert "admin.token is not set" in result.output


def test_the_portal_token_command_refuses_a_long_ttl_and_a_bad_vendor(tmp_path: Path) -> None:
    config = ["--config", str(write(tmp_path, ADMIN)), "portal", "token"]
    too_long = CliRunner().invoke(cli, [*config, "v_1", "--ttl", str(MAX_TTL_S + 1)])
    assert too_long.exit_code == 2 and "--ttl" in too_long.output
    bad = CliRunner().invoke(cli, [*config, "a b"])
    assert bad.exit_code == 2 and "not a vendor id" in bad.output
