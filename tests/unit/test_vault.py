"""Secrets at rest: sealing, opening, master keys and the key file."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from webhookd.config import RedisSettings, SecretsSettings
from webhookd.errors import ConfigError, SecretsError
from webhookd.vault import KEY_FILE_NAME, Vault, key_id, new_master_key, open_vault

KEY, OTHER = b"k" * 32, b"o" * 32
PLAINTEXT = b'{"secret":"whsec_c2VjcmV0IHZhbHVlIG9mIDI0IGJ5dGVz"}'
SEALED = Vault(KEY).seal(PLAINTEXT, "c")


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=300), context=st.text(max_size=30))
def test_what_is_sealed_opens_in_its_context(plaintext: bytes, context: str) -> None:
    vault = Vault(KEY)
    sealed = vault.seal(plaintext, context)
    assert vault.open(sealed, context) == plaintext
    assert sealed.startswith(f"v1.{key_id(KEY)}.")
    assert plaintext == b"" or base64.b64encode(plaintext).decode() not in sealed


def test_every_seal_uses_a_fresh_nonce() -> None:
    vault = Vault(KEY)
    assert vault.seal(PLAINTEXT, "endpoint:ep_1") != vault.seal(PLAINTEXT, "endpoint:ep_1")


def test_a_seal_does_not_open_in_another_context() -> None:
    vault = Vault(KEY)
    sealed = vault.seal(PLAINTEXT, "endpoint:ep_1")
    with pytest.raises(SecretsError, match="endpoint:ep_2 are damaged or were moved"):
        vault.open(sealed, "endpoint:ep_2")


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_any_damage_is_detected(data: st.DataObject) -> None:
    vault = Vault(KEY)
    sealed = SEALED  # sealed once: a fresh random nonce per example would make replays differ
    prefix = len(f"v1.{vault.current_id}.")
    index = data.draw(st.integers(prefix, len(sealed) - 1))
    replacement = data.draw(st.sampled_from("AQgw+/=").filter(lambda c: c != sealed[index]))
    damaged = sealed[:index] + replacement + sealed[index + 1 :]
    try:
        opened = vault.open(damaged, "c")
    except SecretsError:
        return
    assert opened == PLAINTEXT  # only a change base64 ignores (padding bits) may pass


def test_another_key_names_both_key_ids_and_no_key_material() -> None:
    sealed = Vault(OTHER).seal(PLAINTEXT, "c")
    with pytest.raises(SecretsError) as caught:
        Vault(KEY).open(sealed, "c")
    message = str(caught.value)
    assert key_id(OTHER) in message and key_id(KEY) in message
    assert "secrets.key" in message
    for secret in (KEY, OTHER):
        assert base64.b64encode(secret).decode() not in message


def test_previous_keys_open_but_never_seal() -> None:
    old = Vault(OTHER).seal(PLAINTEXT, "c")
    rotated = Vault(KEY, [OTHER])
    assert rotated.open(old, "c") == PLAINTEXT
    assert not rotated.is_current(old)
    assert rotated.is_current(rotated.seal(PLAINTEXT, "c"))
    assert rotated.current_id == key_id(KEY)


@pytest.mark.parametrize("sealed", ["", "v2.mk_x.AAAA", "v1", "v1.mk_x", "plain text"])
def test_malformed_values_raise_secrets_error(sealed: str) -> None:
    with pytest.raises(SecretsError):
        Vault(KEY).open(sealed, "c")


def test_nothing_shows_the_key() -> None:
    vault = Vault(KEY, [OTHER])
    assert "kkkk" not in repr(vault) and "a2tr" not in repr(vault)
    assert key_id(KEY) in repr(vault)
    assert key_id(KEY) != key_id(OTHER)
    assert len(base64.b64decode(new_master_key(os.urandom(32)))) == 32
    with pytest.raises(ValueError):
        new_master_key(b"short")


# --- where the master key comes from ----------------------------------------------------


def redis_settings(data_dir: Path, url: str | None = None) -> RedisSettings:
    return RedisSettings(url=url, data_dir=data_dir, key_prefix="webhookd")


def test_a_configured_key_is_used_and_no_file_is_written(tmp_path: Path) -> None:
    vault = open_vault(SecretsSettings(KEY, (OTHER,)), redis_settings(tmp_path))
    assert vault.current_id == key_id(KEY)
    assert vault.open(Vault(OTHER).seal(b"x", "c"), "c") == b"x"
    assert list(tmp_path.iterdir()) == []


def test_without_a_key_a_private_key_file_is_created_once(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = open_vault(SecretsSettings(None, ()), redis_settings(data_dir))
    path = data_dir / KEY_FILE_NAME
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in data_dir.iterdir()) == [KEY_FILE_NAME]
    again = open_vault(SecretsSettings(None, ()), redis_settings(data_dir))
    assert again.current_id == first.current_id
    assert again.open(first.seal(b"x", "c"), "c") == b"x"


def test_a_key_file_others_can_read_is_refused(tmp_path: Path) -> None:
    open_vault(SecretsSettings(None, ()), redis_settings(tmp_path))
    (tmp_path / KEY_FILE_NAME).chmod(0o644)
    with pytest.raises(ConfigError, match=r"open to other users \(mode 0644\); chmod 600"):
        open_vault(SecretsSettings(None, ()), redis_settings(tmp_path))


def test_a_damaged_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE_NAME
    path.write_text("c2hvcnQ=\n")
    path.chmod(0o600)
    with pytest.raises(ConfigError, match="does not hold a base64 32-byte key"):
        open_vault(SecretsSettings(None, ()), redis_settings(tmp_path))
