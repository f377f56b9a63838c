"""``webhookd vendor`` and the endpoint options, as operators run them: real processes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import redis
from conftest import daemon_config

from processes import WEBHOOKD, write_config
from ratelimiter import VendorPlans


@pytest.fixture
def config_file(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    data = daemon_config(redis_url, key_prefix, quotas={"limiter_prefix": f"{key_prefix}:rl"})
    return write_config(tmp_path / "webhookd.toml", data)


def run_cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
    return subprocess.run(
        [WEBHOOKD, "--config", str(config), *args],
        capture_output=True, text=True, env=environ, timeout=60, check=False,
    )  # fmt: skip


def test_set_plan_writes_the_record_the_limiter_reads_and_show_prints_usage(
    config_file: Path, redis_client: redis.Redis, key_prefix: str
) -> None:
    before = json.loads(run_cli(config_file, "vendor", "show", "v_9").stdout)
    assert before["plan"] is None and before["daily_quota"] is None
    assert before["quotas_enabled"] is False

    done = run_cli(config_file, "vendor", "set-plan", "v_9", "growth")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"vendor": "v_9", "plan": "growth"}
    assert VendorPlans(redis_client, prefix=f"{key_prefix}:rl").plan_of("v_9") == "growth"

    shown = run_cli(config_file, "vendor", "show", "v_9")
    assert shown.returncode == 0, shown.stderr
    usage = json.loads(shown.stdout)
    assert (usage["vendor"], usage["plan"], usage["own_plan"]) == ("v_9", "growth", "growth")
    assert usage["default"] is False
    daily = usage["daily_quota"]
    assert (daily["limit"], daily["amount"], daily["used"], daily["remaining"]) == (
        "1000/day",
        1000,
        0,
        1000,
    )
    assert usage["rate"] is None and usage["deferred"] == 0


def test_an_unknown_plan_or_vendor_is_refused(config_file: Path) -> None:
    unknown = run_cli(config_file, "vendor", "set-plan", "v_9", "platinum")
    assert unknown.returncode == 2
    assert "unknown plan 'platinum'" in unknown.stderr and "basic" in unknown.stderr
    bad = run_cli(config_file, "vendor", "set-plan", "{v}", "basic")
    assert bad.returncode == 2 and "not a vendor id" in bad.stderr


def test_endpoint_options_on_add_and_update(config_file: Path) -> None:
    added = run_cli(
        config_file, "endpoint", "add", "--vendor", "v_1", "--url", "http://127.0.0.1:9/in",
        "--retry-schedule", "1,60,3600", "--timeout", "2.5", "--concurrency", "3",
        "--header", "X-Team: orders", "--header", "Authorization: Bearer t",
    )  # fmt: skip
    assert added.returncode == 0, added.stderr
    endpoint = json.loads(added.stdout)
    assert endpoint["retry_schedule"] == [1.0, 60.0, 3600.0]
    assert (endpoint["timeout"], endpoint["concurrency"]) == (2.5, 3)
    assert endpoint["headers"] == {"X-Team": "orders", "Authorization": "Bearer t"}

    refused = run_cli(config_file, "endpoint", "update", endpoint["id"],
                      "--header", "webhook-signature: v1,forged")  # fmt: skip
    assert refused.returncode == 1 and "webhook-signature" in refused.stderr

    updated = run_cli(config_file, "endpoint", "update", endpoint["id"], "--timeout", "default",
                      "--no-headers", "--retry-schedule", "5,10")  # fmt: skip
    assert updated.returncode == 0, updated.stderr
    changed = json.loads(updated.stdout)
    assert (changed["timeout"], changed["headers"]) == (None, {})
    assert (changed["retry_schedule"], changed["concurrency"]) == ([5.0, 10.0], 3)
    shown = json.loads(run_cli(config_file, "endpoint", "show", endpoint["id"]).stdout)
    assert shown == changed


def test_a_default_plan_missing_from_the_plans_file_stops_the_daemon(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    data = daemon_config(redis_url, key_prefix, quotas={"default_plan": "platinum"})
    result = run_cli(write_config(tmp_path / "webhookd.toml", data), "run")
    assert result.returncode == 2
    assert "quotas.default_plan: unknown plan 'platinum'" in result.stderr
