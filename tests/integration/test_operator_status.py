"""What operators look at: status (API, CLI, metrics), an endpoint's test send, an event's
record and replay from the CLI, and the catalog."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import trio
from conftest import AsyncRedis, daemon_config, publish, running_daemon, until
from prometheus_client.parser import text_string_to_metric_families
from webhook_receiver import Receiver, Reply

from processes import WEBHOOKD, clean_environ, webhookd_cli, webhookd_cli_json, write_config
from webhookd.config import Settings
from webhookd.keyspace import PartitionKeys
from webhookd.publisher import Publisher
from webhookd.verify import verify

TOKEN = {"Authorization": "Bearer test-admin-token"}


def config_of(tmp_path: Path, settings: Settings, **sections: dict[str, object]) -> Path:
    """The config file of a test's settings, for CLI commands run as processes."""
    assert settings.redis.url
    data = daemon_config(settings.redis.url, settings.redis.key_prefix, **sections)
    return write_config(tmp_path / "w.toml", data)


def samples(text: str, name: str, partitions: tuple[str, ...]) -> dict[str, float]:
    """A gauge's value by its partition label, for these partitions (earlier tests in
    this process leave series of their own)."""
    return {
        sample.labels["partition"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels.get("partition") in partitions
    }


async def test_status_counts_what_waits_where(
    make_settings: Callable[..., Settings], aredis: AsyncRedis, tmp_path: Path
) -> None:
    settings = make_settings(stream={"partitions": 2})
    first, second = settings.stream.stream_names
    keys = PartitionKeys(first)
    far_ms = int((time.time() + 3600) * 1000)
    now_ms = int(time.time() * 1000)  # held long ago, they would be dead-lettered at once
    await aredis.zadd(keys.held, {"ep_x:evt_1": now_ms, "ep_x:evt_2": now_ms})
    await aredis.zadd(keys.retry, {"ep_y:evt_3": far_ms, "ep_y:evt_4": far_ms})
    await aredis.sadd(keys.deferred_all, ["ep_y:evt_3", "ep_y:evt_gone"])
    async with running_daemon(settings) as daemon:
        gone = await daemon.registry.add("v_1", "http://127.0.0.1:9/h", now_s=time.time())
        await daemon.registry.set_enabled(gone.id, False, "disabled by operator")
        for _ in range(3):  # nobody subscribes: read and acked
            await aredis.xadd(second, {"type": "order.created", "vendor": "v_2", "data": "{}"})
        base = f"http://127.0.0.1:{daemon.admin_port}"
        async with httpx.AsyncClient(base_url=base, headers=TOKEN) as http:

            async def settled() -> bool:
                report = (await http.get("/v1/status")).json()
                return bool(report["partitions"][1]["lag"] == 0 and report["pending"] == 0)

            with trio.fail_after(10):
                await until(settled)
            report = (await http.get("/v1/status")).json()
            assert (report["held"], report["retry_backlog"], report["deferred"]) == (2, 2, 1)
            assert [p["stream"] for p in report["partitions"]] == [first, second]
            assert report["partitions"][0]["held"] == 2
            shown = report["disabled_endpoints"]
            assert shown["count"] == 1
            assert [(e["id"], e["vendor"], e["reason"], e["by"]) for e in shown["endpoints"]] == [
                (gone.id, "v_1", "disabled by operator", "operator")]  # fmt: skip

            async def gauges() -> tuple[dict[str, float], ...]:
                text = (await http.get("/metrics")).text
                return tuple(samples(text, name, (first, second)) for name in (
                    "webhookd_held_deliveries", "webhookd_deferred_deliveries",
                    "webhookd_consumer_lag", "webhookd_consumer_pending"))  # fmt: skip

            with trio.fail_after(15):  # sampled every 5 s
                await until(gauges, interval_s=0.2, equals=(
                    {first: 2.0, second: 0.0}, {first: 1.0, second: 0.0},
                    {first: 0.0, second: 0.0}, {first: 0.0, second: 0.0}))  # fmt: skip

        config = config_of(tmp_path, settings, stream={"partitions": 2})
        shown = await webhookd_cli_json(config, "status")
        assert {k: shown[k] for k in ("held", "retry_backlog", "deferred")} == {
            "held": 2, "retry_backlog": 2, "deferred": 1}  # fmt: skip
        assert shown["disabled_endpoints"]["count"] == 1


async def test_endpoint_test_sends_one_signed_test_event(
    make_settings: Callable[..., Settings], receiver: Receiver, tmp_path: Path
) -> None:
    settings = make_settings()
    receiver.script("/hook", Reply(status=200, body=b"thanks"), Reply(status=503, body=b"later"))
    async with running_daemon(settings) as daemon:
        base = f"http://127.0.0.1:{daemon.admin_port}"
        async with httpx.AsyncClient(base_url=base, headers=TOKEN) as http:
            made = (await http.post("/v1/endpoints", json={
                "vendor": "v_1", "url": receiver.url(), "events": ["order.*"]})).json()  # fmt: skip
            tested = await http.post(f"/v1/endpoints/{made['id']}/test")
            assert (await http.post("/v1/endpoints/ep_nope/test")).status_code == 404
        answer = tested.json()
        assert tested.status_code == 200
        assert (answer["delivered"], answer["status"], answer["response"]) == (True, 200, "thanks")
        [request] = receiver.requests
        payload = verify(request.body, request.headers, made["secret"])
        assert payload["event"] == "webhook.test" and payload["event_id"] == answer["event_id"]
        assert request.headers["x-event-type"] == "webhook.test"

        config = config_of(tmp_path, settings)
        failed = await trio.run_process(
            [WEBHOOKD, "--config", str(config), "endpoint", "test", made["id"]],
            capture_stdout=True, capture_stderr=True, check=False, env=clean_environ(),
        )  # fmt: skip
    assert failed.returncode == 1, failed.stderr
    shown = json.loads(failed.stdout)
    assert (shown["delivered"], shown["status"], shown["response"]) == (False, 503, "later")
    assert len(receiver.requests) == 2


async def test_events_show_and_replay_from_the_cli(
    make_settings: Callable[..., Settings], receiver: Receiver, tmp_path: Path, aredis: AsyncRedis
) -> None:
    settings = make_settings()
    config = config_of(tmp_path, settings)
    assert settings.redis.url
    publisher = Publisher.from_url(settings.redis.url, stream=settings.stream.name)
    async with running_daemon(settings) as daemon:
        endpoint = await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        event_id = await publish(publisher, "order.created", vendor="v_1", data={"n": 1})
        with trio.fail_after(10):
            await receiver.wait_for(1)

            async def delivered() -> bool:
                found = await aredis.hgetall(PartitionKeys(settings.stream.name).event(event_id))
                return any(json.loads(v).get("state") == "delivered" for v in found.values())

            await until(delivered)
        record = await webhookd_cli_json(config, "events", "show", event_id)
        [delivery] = record["deliveries"]
        assert delivery["endpoint_id"] == endpoint.id
        assert [a["status"] for a in delivery["attempt_log"]] == [200]
        replayed = await webhookd_cli_json(config, "events", "replay", event_id)
        assert replayed == {"event_id": event_id, "replayed": [endpoint.id]}
        with trio.fail_after(10):
            await receiver.wait_for(2)
    unknown = await trio.run_process(
        [WEBHOOKD, "--config", str(config), "events", "show", "evt_nope"],
        capture_stdout=True, capture_stderr=True, check=False, env=clean_environ(),
    )  # fmt: skip
    assert unknown.returncode == 1 and b"no deliveries recorded for evt_nope" in unknown.stderr


async def test_catalog_list(tmp_path: Path, redis_url: str, key_prefix: str) -> None:
    config = write_config(tmp_path / "w.toml", daemon_config(redis_url, key_prefix))
    listed = json.loads(await webhookd_cli(config, "catalog", "list"))
    types = {item["type"]: item["description"] for item in listed}
    assert types["order.created"].startswith("A buyer placed an order")
    assert len(types) > 20
