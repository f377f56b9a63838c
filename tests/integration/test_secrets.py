"""Secrets at rest and in the open: sealed in Redis, re-encrypted, never in a log line."""

from __future__ import annotations

import base64
import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import redis
import trio
from click.testing import CliRunner
from conftest import (
    TEST_SECRETS_KEY,
    AsyncRedis,
    daemon_config,
    entries,
    publish,
    running_daemon,
    until,
)
from test_cli import WEBHOOKD, run_cli, write_config
from webhook_receiver import Receiver, Reply

from webhookd.cli import cli
from webhookd.config import Settings, load_settings
from webhookd.connection import open_client
from webhookd.publisher import Publisher
from webhookd.registry import registry_for
from webhookd.vault import Vault, key_id

GUARD_S = 20
NEW_KEY = base64.b64encode(b"the next master key, 32 bytes..!").decode()


def secret_forms(value: str) -> list[str]:
    """A secret (``whsec_`` or ``whsk_``) as it could leak: whole, its base64, its hex."""
    body = value.split("_", 1)[-1]
    return [value, body, base64.b64decode(body).hex()]


async def every_secret(settings: Settings, endpoint_ids: list[str]) -> list[str]:
    """Every secret the endpoints hold, read back through the vault."""
    assert settings.redis.url
    found = [TEST_SECRETS_KEY, base64.b64decode(TEST_SECRETS_KEY).hex()]
    async with open_client(settings.redis.url) as client:
        registry = registry_for(client, settings)
        for endpoint_id in endpoint_ids:
            endpoint = await registry.get(endpoint_id)
            values = [endpoint.secret, *(old.secret for old in endpoint.retired)]
            values += [
                k for k in (endpoint.signing_key, *(o.signing_key for o in endpoint.retired)) if k
            ]
            for value in values:
                found += secret_forms(value)
    return found


async def test_secrets_are_sealed_in_redis(
    make_settings: Callable[..., Settings], aredis: AsyncRedis
) -> None:
    settings = make_settings()
    async with running_daemon(settings) as daemon:
        endpoint = await daemon.registry.add(
            "v_1", "http://127.0.0.1:9/hook", now_s=time.time(), signing="ed25519"
        )
        endpoint = await daemon.registry.rotate_secret(endpoint.id, now_s=time.time())
    stored = await aredis.hget(f"{settings.redis.key_prefix}:endpoints", endpoint.id) or ""
    secrets = await every_secret(settings, [endpoint.id])
    assert len(secrets) > 8
    for value in secrets:
        assert value not in stored
    assert "whsec_" not in stored and "whsk_" not in stored
    assert json.loads(stored)["sealed"].startswith(
        f"v1.{key_id(base64.b64decode(TEST_SECRETS_KEY))}."
    )


async def test_endpoints_under_an_unknown_key_fail_their_attempts_and_are_not_lost(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis
) -> None:
    settings = make_settings(retry={"schedule": [], "jitter": 0})
    stranger = make_settings(secrets={"key": NEW_KEY}, retry={"schedule": [], "jitter": 0})
    async with running_daemon(settings) as daemon:
        endpoint = await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
    async with running_daemon(stranger) as daemon:
        locked = await daemon.registry.get(endpoint.id)
        assert locked.locked and locked.public(secret=True)["secret"] is None
        assert stranger.redis.url
        stranger_publisher = Publisher.from_url(stranger.redis.url, stream=stranger.stream.name)
        await publish(stranger_publisher, "order.created", vendor="v_1", data={})
        with trio.fail_after(GUARD_S):
            await until(lambda: aredis.xlen(stranger.stream.dead))
    assert receiver.requests == []
    [(_, dead)] = await entries(aredis, stranger.stream.dead)
    assert dead["endpoint_id"] == endpoint.id
    assert dead["last_error"].startswith("not sent: secrets sealed under master key mk_")
    assert key_id(base64.b64decode(NEW_KEY)) in dead["last_error"]


def test_reencrypt_moves_every_secret_to_the_new_key(
    tmp_path: Path, redis_url: str, key_prefix: str, redis_client: redis.Redis
) -> None:
    runner = CliRunner()
    old = write_config(tmp_path / "old.toml", daemon_config(redis_url, key_prefix))
    both_config = daemon_config(redis_url, key_prefix)
    both_config["secrets"] = {"key": NEW_KEY, "previous_keys": [TEST_SECRETS_KEY]}
    both = write_config(tmp_path / "both.toml", both_config)
    new_config = daemon_config(redis_url, key_prefix)
    new_config["secrets"] = {"key": NEW_KEY}
    new = write_config(tmp_path / "new.toml", new_config)

    added = [
        json.loads(
            runner.invoke(
                cli,
                [
                    "--config",
                    str(old),
                    "endpoint",
                    "add",
                    "--vendor",
                    "v_1",
                    "--url",
                    "https://hooks.example.com/in",
                    *extra,
                ],
            ).output
        )
        for extra in ([], ["--signing", "ed25519"])
    ]
    locked = json.loads(runner.invoke(cli, ["--config", str(new), "endpoint", "list"]).output)
    assert [e.get("secret") for e in locked] == [None, None]
    assert all("secrets.previous_keys" in e["locked"] for e in locked)

    result = runner.invoke(cli, ["--config", str(both), "secrets", "reencrypt"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {
        "reencrypted": 2,
        "key_id": key_id(base64.b64decode(NEW_KEY)),
    }
    again = runner.invoke(cli, ["--config", str(both), "secrets", "reencrypt"])
    assert json.loads(again.output)["reencrypted"] == 0

    shown = json.loads(runner.invoke(cli, ["--config", str(new), "endpoint", "list"]).output)
    assert sorted((e["id"], e["public_key"]) for e in shown) == sorted(
        (e["id"], e["public_key"]) for e in added
    )
    revealed = [
        json.loads(
            runner.invoke(cli, ["--config", str(new), "endpoint", "reveal-secret", e["id"]]).stdout
        )
        for e in added
    ]
    assert [e["secret"] for e in revealed] == [e["secret"] for e in added]
    stale = runner.invoke(cli, ["--config", str(old), "secrets", "reencrypt"])
    assert stale.exit_code == 1 and "cannot be opened" in stale.output
    for raw in redis_client.hvals(f"{key_prefix}:endpoints"):
        assert json.loads(raw)["sealed"].startswith(f"v1.{key_id(base64.b64decode(NEW_KEY))}.")


def test_new_key_prints_a_usable_master_key() -> None:
    result = CliRunner().invoke(cli, ["secrets", "new-key"])
    assert result.exit_code == 0
    key = base64.b64decode(result.output.strip(), validate=True)
    assert len(key) == 32
    assert Vault(key).open(Vault(key).seal(b"x", "c"), "c") == b"x"


def test_without_a_master_key_a_private_key_file_is_made_and_reused(
    tmp_path: Path, redis_url: str, key_prefix: str
) -> None:
    config = daemon_config(redis_url, key_prefix)
    del config["secrets"]
    config["redis"]["data_dir"] = str(tmp_path / "data")
    path = write_config(tmp_path / "w.toml", config)
    first = run_cli(path, "endpoint", "add", "--vendor", "v_1", "--url", "https://a.example/in")
    assert first.returncode == 0, first.stderr
    key_file = tmp_path / "data" / "secrets.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "secrets.key_file_created" in first.stderr
    assert key_file.read_text().strip() not in first.stderr + first.stdout
    endpoint = json.loads(first.stdout)
    shown = run_cli(path, "endpoint", "reveal-secret", endpoint["id"])
    assert json.loads(shown.stdout)["secret"] == endpoint["secret"]
    key_file.chmod(0o644)
    refused = run_cli(path, "endpoint", "list")
    assert refused.returncode == 2 and "chmod 600" in refused.stderr
    assert run_cli(path, "run").returncode == 2


# --- the grep test --------------------------------------------------------------------------


async def test_no_secret_reaches_the_logs_of_a_full_delivery_run(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    receiver: Receiver,
    aredis: AsyncRedis,
) -> None:
    """Register, deliver, fail, retry, dead-letter and rotate, all at debug level; then grep
    every log line, every metric and every attempt record for every form of every secret."""
    config = daemon_config(redis_url, key_prefix)
    config["log"] = {"level": "debug"}
    config["retry"] = {"schedule": [0.2], "jitter": 0}
    path = write_config(tmp_path / "w.toml", config)
    settings = load_settings(path, environ={})
    receiver.script("/flaky", Reply(status=503, body=b"busy"))
    logs: list[str] = []

    async def cli_json(*args: str) -> Any:
        """Run a command in its own process; the receiver keeps answering meanwhile."""
        result = await trio.to_thread.run_sync(lambda: run_cli(path, *args))
        assert result.returncode == 0, result.stderr
        logs.append(result.stderr)
        out = result.stdout.strip()
        return json.loads(out) if out.startswith(("{", "[")) else out

    plain = await cli_json("endpoint", "add", "--vendor", "v_1", "--url", receiver.url("/ok"))
    flaky = await cli_json(
        "endpoint",
        "add",
        "--vendor",
        "v_1",
        "--url",
        receiver.url("/flaky"),
        "--signing",
        "ed25519",
    )
    dead = await cli_json(
        "endpoint", "add", "--vendor", "v_1", "--url", "http://127.0.0.1:9/closed"
    )
    ids = [plain["id"], flaky["id"], dead["id"]]

    daemon_log = tmp_path / "daemon.log"
    environ = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
    with daemon_log.open("wb") as log_file:
        process = await trio.lowlevel.open_process(
            [WEBHOOKD, "--config", str(path), "run"],
            env=environ,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    try:
        with trio.fail_after(GUARD_S):
            first = await cli_json(
                "publish", "order.created", "--vendor", "v_1", "--data", '{"n": 1}'
            )
            await receiver.wait_for(1, "/ok")
            await receiver.wait_for(2, "/flaky")
            await until(lambda: aredis.xlen(settings.stream.dead), equals=1)
            await cli_json("endpoint", "rotate-secret", flaky["id"])
            await cli_json("endpoint", "list")
            second = await cli_json("publish", "order.created", "--vendor", "v_1", "--data", "{}")
            await receiver.wait_for(3, "/flaky")
            await until(lambda: aredis.xlen(settings.stream.dead), equals=2)
            [port] = [
                line["port"]
                for line in map(json.loads, daemon_log.read_text().splitlines())
                if line["event"] == "admin.listening"
            ]
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
                metrics = (await http.get("/metrics")).text
                token = {"Authorization": "Bearer test-admin-token"}
                records = "".join(
                    [
                        (await http.get(f"/v1/events/{event_id}", headers=token)).text
                        for event_id in (first, second)
                    ]
                )
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
    finally:
        process.kill()

    logs.append(daemon_log.read_text())
    everything = "\n".join(logs)
    assert everything.count('"event": "delivery.attempt"') >= 6
    assert '"status":503' in records and "Connection refused" in records
    secrets = await every_secret(settings, ids)
    assert len({s for s in secrets if s.startswith("whsk_")}) == 2  # the flaky one's, rotated
    for value in secrets:
        for where, text in (("logs", everything), ("metrics", metrics), ("records", records)):
            assert value not in text, f"a secret reached the {where}"
    assert "whsec_" not in everything and "whsk_" not in everything
