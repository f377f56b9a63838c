"""``webhookd demo`` runs end to end against a real Redis and says so."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from webhookd.cli import cli


def test_demo_delivers_every_event_and_shows_the_retry(tmp_path: Path, redis_url: str) -> None:
    config = tmp_path / "webhookd.toml"
    config.write_text(f'[redis]\nurl = "{redis_url}"\ndata_dir = "{tmp_path}"\n')
    for _ in range(2):  # a second run starts clean: no endpoint left over from the first
        result = CliRunner().invoke(cli, ["--config", str(config), "demo"])
        assert result.exit_code == 0, result.output
        assert "demo finished: every event delivered and verified" in result.output
        assert result.output.count("signature ok") == 4
        assert "503  inventory.low_stock" in result.output
