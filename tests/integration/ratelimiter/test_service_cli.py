"""The ``ratelimiter`` command line: API keys in a real Redis, config errors, and serve."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
import trio
from click.testing import CliRunner

from ratelimiter import InvalidRequest, Limiter, UnknownPlan
from ratelimiter.cli import cli
from ratelimiter.embedded import free_port
from ratelimiter.vendors import VendorPlans, quota_key

RATELIMITER = str(Path(sys.executable).with_name("ratelimiter"))


@pytest.fixture
def config_file(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    path = tmp_path / "ratelimiter.toml"
    path.write_text(
        f'[redis]\nurl = "{redis_url}"\nkey_prefix = "{key_prefix}"\n'
        f'[service]\nlisten = "127.0.0.1:{free_port()}"\n[log]\nlevel = "warning"\n'
    )
    return path


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), env={"RATELIMITER_CONFIG": None})
    return result.exit_code, result.output


def test_key_create_list_set_plan_and_revoke(
    config_file: Path, redis_client: redis.Redis, key_prefix: str
) -> None:
    config = ("--config", str(config_file))
    code, output = invoke("key", "create", "--vendor", "v_1", "--plan", "growth", *config)
    assert code == 0, output
    key = output.strip()
    assert re.fullmatch(r"mk_live_[A-Za-z0-9]{32}", key)
    records = list(redis_client.scan_iter(f"{key_prefix}:apikey:*"))
    stored = json.dumps([redis_client.hgetall(k) for k in records])
    assert len(records) == 1 and key not in stored  # only its SHA-256
    code, output = invoke("key", "create", "--vendor", "v_2", "--plan", "basic", "--json", *config)
    second = json.loads(output)
    assert second["key"].startswith("mk_live_") and second["plan"] == "basic"

    code, output = invoke("key", "list", *config)
    listed = json.loads(output)
    assert sorted((k["vendor"], k["plan"], k["revoked"]) for k in listed) == [
        ("v_1", "growth", None), ("v_2", "basic", None)
    ]  # fmt: skip
    assert "mk_live_" not in output
    assert [k["vendor"] for k in json.loads(invoke("key", "list", "--vendor", "v_2", *config)[1])] \
        == ["v_2"]  # fmt: skip

    code, output = invoke("key", "set-plan", key, "enterprise", *config)
    assert (code, json.loads(output)["plan"]) == (0, "enterprise")
    code, output = invoke("key", "revoke", second["id"], *config)
    assert code == 0 and json.loads(output)["revoked"] is not None

    code, output = invoke("key", "set-plan", key, "gold", *config)
    assert code == 2 and "unknown plan 'gold'" in output
    code, output = invoke("key", "create", "--vendor", "v", "--plan", "gold", *config)
    assert code == 2 and "unknown plan 'gold'" in output
    code, output = invoke("key", "revoke", "key_0000000000000000", *config)
    assert code == 1 and "no API key key_0000000000000000" in output


def test_key_commands_need_redis(tmp_path: Path) -> None:
    path = tmp_path / "memory.toml"
    path.write_text('[redis]\nurl = "memory://"\n')
    code, output = invoke("key", "list", "--config", str(path))
    assert code == 1 and "redis.url is memory://" in output


def run(*args: str, config: Path) -> subprocess.CompletedProcess[str]:
    """The ``ratelimiter`` command as a process of its own, its config given to the group."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RATELIMITER_")}
    return subprocess.run(
        [RATELIMITER, "--config", str(config), *args], env=environ, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip


def test_vendor_set_plan_and_show_with_the_usage_of_all_its_keys(
    config_file: Path, redis_url: str, key_prefix: str
) -> None:
    done = run("vendor", "set-plan", "v_1", "growth", config=config_file)
    assert (done.returncode, json.loads(done.stdout)) == (0, {"vendor": "v_1", "plan": "growth"})
    unknown = run("vendor", "set-plan", "v_1", "gold", config=config_file)
    assert unknown.returncode == 2 and "unknown plan 'gold'" in unknown.stderr
    with Limiter.from_url(redis_url, prefix=key_prefix) as limiter:
        for _ in range(3):  # as the service counts a vendor's API keys
            limiter.hit(quota_key("v_1"), plan="growth")
    shown = json.loads(run("vendor", "show", "v_1", config=config_file).stdout)
    assert (shown["vendor"], shown["plan"], shown["default"]) == ("v_1", "growth", False)
    assert [(u["limit"], u["amount"], u["used"], u["remaining"]) for u in shown["usage"]] == [
        ("100000/day", 100_000, 3, 99_997), ("200/minute", 200, 3, 197)
    ]  # fmt: skip
    assert all(u["reset"] > time.time() for u in shown["usage"])
    other = json.loads(run("vendor", "show", "v_2", config=config_file).stdout)
    assert (other["plan"], other["default"]) == ("basic", True)
    assert [u["used"] for u in other["usage"]] == [0, 0]


def test_vendor_plans_in_the_library(redis_url: str, key_prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    vendors = VendorPlans(client, prefix=key_prefix)
    assert vendors.plan_of("v_1") is None
    vendors.set_plan("v_1", "enterprise")
    assert vendors.plan_of("v_1") == "enterprise"
    with pytest.raises(UnknownPlan):
        vendors.set_plan("v_1", "gold")
    with pytest.raises(InvalidRequest):
        vendors.set_plan("", "basic")
    assert [u.remaining for u in vendors.usage("v_1", "enterprise")] == [1_000_000, 1_000]
    client.close()


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ('[service]\ndeny_status = "often"\n', "service.deny_status"),
        ("[service]\ncolour = 1\n", "service.colour: unknown key"),
        ('[service]\ndefault_plan = "gold"\n', "service.default_plan: unknown plan 'gold'"),
        ('[routes]\n"GET /x" = "5/fortnight"\n', 'routes."GET /x"'),
        ('[plans]\nfile = "/nonexistent/plans.toml"\n', "cannot read plans file"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, body: str, named: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    code, output = invoke("serve", "--config", str(path))
    assert code == 2
    assert "ratelimiter: config error:" in output and named in output


def test_the_config_goes_on_the_group_or_after_the_command(
    tmp_path: Path, config_file: Path
) -> None:
    memory = tmp_path / "memory.toml"
    memory.write_text('[redis]\nurl = "memory://"\n')
    bad = tmp_path / "bad.toml"
    bad.write_text("[service]\ncolour = 1\n")
    code, output = invoke("--config", str(memory), "key", "list")
    assert code == 1 and "redis.url is memory://" in output
    code, output = invoke("--config", str(memory), "key", "list", "--config", str(config_file))
    assert (code, json.loads(output)) == (0, [])  # the command's own --config wins
    code, output = invoke("--config", str(bad), "serve")
    assert code == 2 and "service.colour: unknown key" in output
    result = CliRunner().invoke(cli, ["key", "list"], env={"RATELIMITER_CONFIG": str(memory)})
    assert result.exit_code == 1 and "redis.url is memory://" in result.output


def test_a_bad_environment_override_exits_2(config_file: Path) -> None:
    result = CliRunner().invoke(
        cli, ["key", "list", "--config", str(config_file)],
        env={"RATELIMITER_SERVICE_FAILURE_MODE": "sometimes"},
    )  # fmt: skip
    assert result.exit_code == 2
    assert "service.failure_mode" in result.output
    assert "RATELIMITER_SERVICE_FAILURE_MODE" in result.output


@pytest.fixture
def listen(config_file: Path) -> str:
    found = re.search(r'listen = "([^"]+)"', config_file.read_text())
    assert found is not None
    return found.group(1)


async def test_serve_answers_then_exits_0_on_sigterm(config_file: Path, listen: str) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RATELIMITER_")}
    process = await trio.lowlevel.open_process(
        [RATELIMITER, "serve", "--config", str(config_file)], env=environ,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://{listen}") as http:
            with trio.fail_after(20):
                while True:
                    try:
                        health = await http.get("/healthz")
                        break
                    except httpx.ConnectError:
                        await trio.sleep(0.05)
                assert health.json() == {"status": "ok", "store": "redis"}
                check = await http.post("/v1/check", json={"key": "k", "limits": ["5/m"]})
                assert check.json()["remaining"] == 4
        process.send_signal(signal.SIGTERM)
        with trio.fail_after(10):
            assert await process.wait() == 0
    finally:
        process.kill()


def test_serve_reports_an_address_in_use(config_file: Path, listen: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", int(listen.rsplit(":", 1)[1])))
        taken.listen()
        code, output = invoke("serve", "--config", str(config_file))
    assert code == 1 and "cannot listen on" in output
