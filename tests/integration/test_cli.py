"""The ``webhookd`` command: config errors, endpoint commands, publishing, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
import trio
from click.testing import CliRunner
from conftest import AsyncRedis, daemon_config, pending, recorded_states
from daemon_parts import ManualClock, Process, ScriptedTransport
from webhook_receiver import Receiver, Reply

from processes import write_config
from webhookd.cli import cli
from webhookd.config import load_settings
from webhookd.connection import open_client
from webhookd.embedded import free_port
from webhookd.keyspace import PartitionKeys
from webhookd.publisher import entry_fields
from webhookd.registry import registry_for
from webhookd.store import store_for

WEBHOOKD = str(Path(sys.executable).parent / "webhookd")


@pytest.fixture
def config_file(tmp_path: Path, redis_url: str, key_prefix: str) -> Path:
    return write_config(tmp_path / "webhookd.toml", daemon_config(redis_url, key_prefix))


def run_cli(
    config: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
    environ.update(env or {})
    return subprocess.run(
        [WEBHOOKD, "--config", str(config), *args],
        capture_output=True, text=True, env=environ, timeout=60, check=False,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('[delivery]\ntimeout = "ten"\n', "delivery.timeout"),
        ("[delivery]\ntimout = 3\n", "delivery.timout"),
        ("[retry]\nschedule = [1, -2]\n", "retry.schedule"),
        ("[nonsense]\nx = 1\n", "nonsense"),
        ("[stream]\nreclaim_idle = 5\n[delivery]\ntimeout = 10\n", "stream.reclaim_idle"),
    ],
)
def test_bad_config_exits_2_naming_the_key(tmp_path: Path, body: str, key: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    result = run_cli(path, "run")
    assert result.returncode == 2, result.stderr
    assert key in result.stderr


def test_bad_environment_override_exits_2_naming_the_variable(config_file: Path) -> None:
    result = run_cli(config_file, "run", env={"WEBHOOKD_DELIVERY_MAX_IN_FLIGHT": "lots"})
    assert result.returncode == 2
    assert "delivery.max_in_flight" in result.stderr
    assert "WEBHOOKD_DELIVERY_MAX_IN_FLIGHT" in result.stderr


def test_endpoint_commands(config_file: Path) -> None:
    runner = CliRunner()
    base = ["--config", str(config_file), "endpoint"]
    added = runner.invoke(
        cli, [*base, "add", "--vendor", "v_9", "--url", "http://127.0.0.1:9/hook",
              "--events", "order.*,payment.captured"],
    )  # fmt: skip
    assert added.exit_code == 0, added.output
    endpoint = json.loads(added.output)
    assert endpoint["id"].startswith("ep_")
    assert endpoint["secret"].startswith("whsec_")
    assert endpoint["events"] == ["order.*", "payment.captured"]
    shown = json.loads(runner.invoke(cli, [*base, "show", endpoint["id"]]).output)
    assert shown == {k: v for k, v in endpoint.items() if k != "secret"}
    revealed = runner.invoke(cli, [*base, "reveal-secret", endpoint["id"]])
    assert json.loads(revealed.stdout) == endpoint
    assert "endpoint.secret_revealed" in revealed.stderr and endpoint["id"] in revealed.stderr
    assert endpoint["secret"] not in revealed.stderr
    disabled = json.loads(runner.invoke(cli, [*base, "disable", endpoint["id"]]).stdout)
    assert disabled["enabled"] is False
    enabled = json.loads(runner.invoke(cli, [*base, "enable", endpoint["id"]]).stdout)
    assert enabled["enabled"] is True
    rotated = json.loads(runner.invoke(cli, [*base, "rotate-secret", endpoint["id"]]).output)
    assert rotated["secret"] != endpoint["secret"]
    listed = runner.invoke(cli, [*base, "list"]).output
    assert [e["id"] for e in json.loads(listed)] == [endpoint["id"]] and "whsec_" not in listed
    too_long = runner.invoke(cli, [*base, "rotate-secret", endpoint["id"], "--grace", "2592001"])
    assert too_long.exit_code == 2
    assert runner.invoke(cli, [*base, "rm", endpoint["id"]]).exit_code == 0
    missing = runner.invoke(cli, [*base, "show", endpoint["id"]])
    assert missing.exit_code == 1
    assert "no endpoint with id" in missing.output


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "url must not contain spaces"),
        ("ftp://example.com/hook", "url must start with https://"),
        ("https:///hook", "url has no host"),
        ("https://user:pw@example.com/hook", "credentials"),
    ],
)
def test_endpoint_add_refuses_bad_urls(config_file: Path, url: str, message: str) -> None:
    result = CliRunner().invoke(
        cli, ["--config", str(config_file), "endpoint", "add", "--vendor", "v_1", "--url", url]
    )
    assert result.exit_code == 1
    assert message in result.output


def test_endpoint_add_refuses_plain_http_by_default(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    config = daemon_config(redis_url, key_prefix)
    config["delivery"].update(require_https=True, allow_private_targets=False)
    path = write_config(tmp_path / "strict.toml", config)
    result = CliRunner().invoke(
        cli, ["--config", str(path), "endpoint", "add", "--vendor", "v_1",
              "--url", "http://example.com/hook"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "url must use https" in result.output


def test_publish_writes_the_contract_entry(
    config_file: Path, redis_client: redis.Redis, key_prefix: str
) -> None:
    result = CliRunner().invoke(
        cli, ["--config", str(config_file), "publish", "order.created", "--vendor", "v_1",
              "--data", '{"order_id": "ord_1"}'],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    [(entry_id, fields)] = redis_client.xrange(f"{key_prefix}:events")
    assert result.output.strip() == f"evt_{entry_id}"
    assert fields == {"type": "order.created", "vendor": "v_1", "data": '{"order_id":"ord_1"}'}
    bad = CliRunner().invoke(
        cli, ["--config", str(config_file), "publish", "order.created", "--vendor", "v_1",
              "--data", "[1]"],
    )  # fmt: skip
    assert bad.exit_code == 2
    assert "must be a JSON object" in bad.output


async def test_sigterm_finishes_in_flight_deliveries_then_exits_0(
    config_file: Path, receiver: Receiver, aredis: AsyncRedis, key_prefix: str
) -> None:
    receiver.default = Reply(stall_s=0.5)
    settings = load_settings(config_file, environ={})
    assert settings.redis.url
    async with open_client(settings.redis.url) as client:
        await registry_for(client, settings).add("v_1", receiver.url(), now_s=time.time())
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
    process = await trio.lowlevel.open_process(
        [WEBHOOKD, "--config", str(config_file), "run"], env=environ,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        stream = f"{key_prefix}:events"
        for n in range(5):
            await aredis.xadd(
                stream, {"type": "order.created", "vendor": "v_1", "data": f'{{"n": {n}}}'}
            )
        with trio.fail_after(20):
            await receiver.wait_for(5)
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        process.kill()
    assert await pending(aredis, stream) == 0
    states = [state["state"] for state in await recorded_states(aredis, stream)]
    assert states == ["delivered"] * 5


@pytest.mark.parametrize(
    ("events", "message"),
    [
        (
            "order.create",
            "'order.create' matches no event type in config/events.toml; "
            "did you mean 'order.created'?",
        ),
        ("order.*,refunds.*", "'refunds.*' matches no event type"),
        ("nonsense", "'nonsense' matches no event type"),
    ],
)
def test_endpoint_add_refuses_events_the_catalog_does_not_have(
    config_file: Path, redis_client: redis.Redis, key_prefix: str, events: str, message: str
) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(config_file),
            "endpoint",
            "add",
            "--vendor",
            "v_1",
            "--url",
            "http://127.0.0.1:9/hook",
            "--events",
            events,
        ],
    )
    assert result.exit_code == 1
    assert message in result.output
    assert redis_client.hlen(f"{key_prefix}:endpoints") == 0


def test_ed25519_endpoints_show_their_public_key_and_rotate_it(config_file: Path) -> None:
    runner = CliRunner()
    base = ["--config", str(config_file), "endpoint"]
    added = runner.invoke(
        cli,
        [
            *base,
            "add",
            "--vendor",
            "v_1",
            "--url",
            "http://127.0.0.1:9/hook",
            "--signing",
            "ed25519",
        ],
    )
    assert added.exit_code == 0, added.output
    endpoint = json.loads(added.output)
    assert endpoint["signing"] == "ed25519"
    assert endpoint["public_key"].startswith("whpk_")
    assert endpoint["secret"].startswith("whsec_")  # X-Signature needs it on every delivery
    assert "whsk_" not in added.output
    rotated = json.loads(
        runner.invoke(cli, [*base, "rotate-secret", endpoint["id"], "--grace", "0"]).output
    )
    assert rotated["public_key"] != endpoint["public_key"]
    assert rotated["secret"] != endpoint["secret"]
    negative = runner.invoke(cli, [*base, "rotate-secret", endpoint["id"], "--grace", "-1"])
    assert negative.exit_code == 2


def test_a_broken_event_catalog_exits_2(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    config = daemon_config(redis_url, key_prefix)
    config["events"] = {"catalog": str(tmp_path / "missing.toml")}
    path = write_config(tmp_path / "w.toml", config)
    for args in (["run"], ["endpoint", "list"]):
        result = run_cli(path, *args)
        assert result.returncode == 2, result.stderr
        assert "events.catalog: cannot read" in result.stderr


def test_redis_down_at_start_is_one_clear_line_and_exit_1(config_file: Path) -> None:
    closed = f"redis://127.0.0.1:{free_port()}/0"
    result = run_cli(config_file, "run", env={"WEBHOOKD_REDIS_URL": closed})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines == [lines[-1]] and lines[0].startswith("webhookd: cannot start: ")
    assert "Redis unavailable" in lines[0]
    assert "Traceback" not in result.stderr


def test_a_stream_name_with_braces_is_refused(config_file: Path) -> None:
    result = run_cli(config_file, "run", env={"WEBHOOKD_STREAM_NAME": "events{x}"})
    assert result.returncode == 2
    assert "stream.name" in result.stderr and "without { or }" in result.stderr


def test_enable_with_recover_sends_what_was_held_and_deliveries_lists_it(
    config_file: Path,
) -> None:
    """The endpoint's delivery is held by the daemon's parts (here in-process), then the
    CLI, as a real process, lists it in the history and recovers it."""
    settings = load_settings(config_file)
    assert settings.redis.url is not None
    url = settings.redis.url

    async def hold_one() -> str:
        async with open_client(url) as client:
            store = store_for(client, settings)
            await store.ensure_group(settings.stream.name)
            registry = registry_for(client, settings)
            endpoint = await registry.add("v_1", "http://127.0.0.1:9/in", now_s=time.time())
            await registry.set_enabled(endpoint.id, False)
            fields = entry_fields("order.created", "v_1", {"n": 1}, "evt-held")
            await client.xadd(settings.stream.name, dict(fields))
            process = Process(client, settings, consumer="c", clock=ManualClock(time.time()),
                              transport=ScriptedTransport())  # fmt: skip
            await process.work(process.take_new)
            return endpoint.id

    endpoint_id = trio.run(hold_one)
    listed = run_cli(config_file, "deliveries", "--outcome", "held")
    assert listed.returncode == 0, listed.stderr
    history = json.loads(listed.stdout)
    assert [(d["event_id"], d["endpoint_id"]) for d in history["deliveries"]] == [
        ("evt-held", endpoint_id)]  # fmt: skip
    assert history["next_cursor"] is None
    assert run_cli(config_file, "deliveries", "--cursor", "bad").returncode == 1
    lone = run_cli(
        config_file, "endpoint", "enable", endpoint_id, "--since", "2024-01-01T00:00:00Z"
    )
    assert lone.returncode == 1 and "--since goes with --recover" in lone.stderr

    enabled = run_cli(config_file, "endpoint", "enable", endpoint_id, "--recover")
    assert enabled.returncode == 0, enabled.stderr
    shown = json.loads(enabled.stdout)
    assert shown["enabled"] is True
    assert shown["recovered"] == {"held": 1, "redriven": 0}

    async def retry_members() -> list[str]:
        async with open_client(url) as client:
            members = await client.zrange(PartitionKeys(settings.stream.name).retry, 0, -1)
            return [m.decode() for m in members]

    assert trio.run(retry_members) == [f"{endpoint_id}:evt-held"]
