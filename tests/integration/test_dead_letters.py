"""Dead letters for operators: newest-first pages with a cursor, filters that read a
bounded number of letters, show, redrive and purge by id or filter, and oversized events
that a dead letter keeps only as an excerpt (redriven from their stream entry)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import redis
import trio
from click.testing import CliRunner
from conftest import AsyncRedis, daemon_config, publish, running_daemon, until
from webhook_receiver import Receiver, Reply

from processes import write_config
from webhookd import deadletters
from webhookd.cli import cli
from webhookd.config import Settings
from webhookd.connection import open_client
from webhookd.deadletters import DeadFilter, dead_page, purge_letters, redrive_letters
from webhookd.model import DEAD_BODY_MAX_BYTES, DEAD_EXCERPT_BYTES
from webhookd.publisher import Publisher
from webhookd.store import Store

TOKEN = {"Authorization": "Bearer test-admin-token"}


def letter(n: int, endpoint_id: str = "ep_a", vendor: str = "v_1") -> dict[str, str]:
    """The fields a delivery's dead letter has (see webhookd.model.dead_letter)."""
    body = json.dumps({"event": "order.created", "event_id": f"evt_{n}", "data": {"n": n}})
    return {"event_id": f"evt_{n}", "endpoint_id": endpoint_id, "attempts": "6",
            "last_status": "500", "last_error": "HTTP 500", "reason": "retries exhausted",
            "event_type": "order.created", "vendor": vendor,
            "timestamp": "2024-05-01T10:00:00.000Z", "body": body}  # fmt: skip


def store_for(client: object, settings: Settings) -> Store:
    return Store(client, settings.stream, settings.redis.key_prefix,  # type: ignore[arg-type]
                 settings.delivery.record_ttl_s)  # fmt: skip


async def test_pages_run_newest_first_and_filters_read_a_bounded_number(
    make_settings: Callable[..., Settings], aredis: AsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = make_settings()
    ids = [await aredis.xadd(settings.stream.dead, letter(n, "ep_b" if n in (1, 8) else "ep_a"))
           for n in range(10)]  # fmt: skip
    assert settings.redis.url
    async with open_client(settings.redis.url) as client:
        store = store_for(client, settings)
        seen, cursor = [], None
        while True:
            page = await dead_page(store, 4, cursor)
            seen += [dead_id for dead_id, _ in page.letters]
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        assert seen == ids[::-1]
        last = await dead_page(store, 5, ids[5])
        assert [i for i, _ in last.letters] == ids[:5][::-1] and last.next_cursor is None
        assert (await dead_page(store, 5, "0-0")).letters == []

        monkeypatch.setattr(deadletters, "SCAN_LIMIT", 3)
        only_b = DeadFilter(endpoint_id="ep_b")
        first = await dead_page(store, 1, None, only_b)  # reads 9, 8: finds 8
        assert [f["event_id"] for _, f in first.letters] == ["evt_8"]
        assert first.next_cursor == ids[8]
        empty = await dead_page(store, 1, first.next_cursor, only_b)  # reads 7, 6, 5
        assert empty.letters == [] and empty.next_cursor == ids[5]
        rest = await dead_page(store, 1, empty.next_cursor, only_b)  # 4, 3, 2
        assert rest.letters == [] and rest.next_cursor == ids[2]
        end = await dead_page(store, 1, rest.next_cursor, only_b)  # 1: found, 0 left
        assert [f["event_id"] for _, f in end.letters] == ["evt_1"]
        assert end.next_cursor == ids[1]
        assert await dead_page(store, 1, end.next_cursor, only_b) == deadletters.DeadPage([], None)

        assert await purge_letters(store, selection=DeadFilter(endpoint_id="ep_b")) == 2
        assert await purge_letters(store, ids=[ids[0], ids[1]]) == 1  # ids[1] went just now
        with pytest.raises(ValueError, match="say which"):
            await purge_letters(store)
        assert await purge_letters(store, everything=True) == 7
    assert await aredis.xlen(settings.stream.dead) == 0


async def test_admin_api_lists_shows_redrives_and_purges(
    make_settings: Callable[..., Settings], aredis: AsyncRedis, receiver: Receiver
) -> None:
    settings = make_settings()
    async with running_daemon(settings) as daemon:
        base = f"http://127.0.0.1:{daemon.admin_port}"
        async with httpx.AsyncClient(base_url=base, headers=TOKEN) as http:
            made = await http.post("/v1/endpoints", json={"vendor": "v_1", "url": receiver.url()})
            endpoint_id = made.json()["id"]
            malformed = await aredis.xadd(settings.stream.dead, {"reason": "missing field 'type'"})
            ids = [await aredis.xadd(settings.stream.dead, letter(n, endpoint_id, f"v_{n % 2}"))
                   for n in range(5)]  # fmt: skip

            page = await http.get("/v1/dead", params={"limit": 2})
            assert [d["id"] for d in page.json()] == [ids[4], ids[3]]
            assert page.headers["x-next-cursor"] == ids[3]
            tail = await http.get("/v1/dead", params={"limit": 10, "cursor": ids[3]})
            assert [d["id"] for d in tail.json()] == [*ids[:3][::-1], malformed]
            assert "x-next-cursor" not in tail.headers
            odd = await http.get("/v1/dead", params={"vendor": "v_1"})
            assert [d["id"] for d in odd.json()] == [ids[3], ids[1]]
            for bad in ({"cursor": "later"}, {"cursor": "1" * 20}, {"vendor": ""}):
                assert (await http.get("/v1/dead", params=bad)).status_code == 400, bad

            shown = await http.get(f"/v1/dead/{ids[2]}")
            assert shown.json() == {"id": ids[2], **letter(2, endpoint_id, "v_0")}
            for missing in ("1-1", "nonsense"):
                assert (await http.get(f"/v1/dead/{missing}")).status_code == 404

            redriven = await http.post("/v1/dead/redrive", json={"ids": [ids[0], "1-1"]})
            assert redriven.status_code == 202
            assert redriven.json() == {"redriven": 1, "skipped": 1,
                                       "reasons": {"1-1": "no such dead letter"}}  # fmt: skip
            by_vendor = await http.post("/v1/dead/redrive", params={"vendor": "v_1"})
            assert by_vendor.json()["redriven"] == 2
            with trio.fail_after(10):
                await receiver.wait_for(3)
            assert sorted(r.headers["x-event-id"] for r in receiver.requests) == [
                "evt_0", "evt_1", "evt_3"]  # fmt: skip

            for body in (None, {}, {"all": False}, {"ids": []}, {"ids": ["x"]}, {"ids": None},
                         {"vendor": 3}, {"color": "red"}):  # fmt: skip
                refused = await http.post("/v1/dead/purge", json=body)
                assert refused.status_code == 400, body
            assert (await http.post("/v1/dead/purge", json={"ids": [ids[2]]})).json() == {
                "purged": 1}  # fmt: skip
            everything = await http.post("/v1/dead/purge", json={"all": True})
            assert everything.json() == {"purged": 2}  # ids[4] and the malformed one
    assert await aredis.xlen(settings.stream.dead) == 0


async def test_an_oversized_event_is_kept_as_an_excerpt_and_redriven_from_its_entry(
    make_settings: Callable[..., Settings], aredis: AsyncRedis, receiver: Receiver
) -> None:
    settings = make_settings(retry={"schedule": []})
    receiver.script("/hook", Reply(status=500), Reply(status=500))
    big = {"note": "é" * DEAD_BODY_MAX_BYTES}  # two bytes a character: twice the bound
    assert settings.redis.url
    publisher = Publisher.from_url(settings.redis.url, stream=settings.stream.name)
    async with running_daemon(settings) as daemon:
        await daemon.registry.add("v_1", receiver.url(), now_s=time.time())
        kept = await publish(publisher, "order.created", vendor="v_1", data=big)
        trimmed = await publish(publisher, "order.created", vendor="v_1", data=big)
        with trio.fail_after(10):
            await until(lambda: aredis.xlen(settings.stream.dead), equals=2)
        letters = {f["event_id"]: (i, f) for i, f in
                   [(e.identifier, e.field_values) for e in await aredis.xrange(
                       settings.stream.dead)]}  # fmt: skip
        _, fields = letters[kept]
        assert "body" not in fields
        # both are sent at once: the receiver may see either first
        [sent] = [r.body for r in receiver.requests if r.headers["x-event-id"] == kept]
        assert int(fields["body_size"]) == len(sent) > DEAD_BODY_MAX_BYTES
        excerpt = fields["body_excerpt"].encode()
        assert len(excerpt) <= DEAD_EXCERPT_BYTES and sent.startswith(excerpt)
        await aredis.xdel(settings.stream.name, [letters[trimmed][1]["entry_id"]])

        answer = await redrive_letters(daemon.store, time.time())
        assert (answer.redriven, answer.skipped) == (1, 1)
        assert "stream entry is gone" in answer.reasons[letters[trimmed][0]]
        with trio.fail_after(10):
            [_, _, again] = await receiver.wait_for(3)
    assert again.body == sent and again.headers["x-event-id"] == kept
    [left] = await aredis.xrange(settings.stream.dead)
    assert left.field_values["event_id"] == trimmed


def test_dead_commands(tmp_path: Path, redis_url: str, key_prefix: str,
                       redis_client: redis.Redis) -> None:  # fmt: skip
    config = write_config(tmp_path / "w.toml", daemon_config(redis_url, key_prefix))
    dead = f"{key_prefix}:dead"
    ids = [redis_client.xadd(dead, letter(n, "ep_a" if n < 3 else "ep_b")) for n in range(5)]  # type: ignore[arg-type]
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, ["--config", str(config), "dead", *args])
        assert result.exit_code == 0, result.output
        return result.stdout

    listed = runner.invoke(cli, ["--config", str(config), "dead", "list", "--limit", "2"])
    assert [d["id"] for d in json.loads(listed.stdout)] == [ids[4], ids[3]]
    assert "body" not in listed.stdout
    assert f"next cursor: {ids[3]}" in listed.stderr
    rest = json.loads(run("list", "--cursor", ids[3], "--endpoint", "ep_a"))
    assert [d["id"] for d in rest] == ids[:3][::-1]
    assert json.loads(run("show", ids[1]))["body"] == letter(1)["body"]
    assert runner.invoke(cli, ["--config", str(config), "dead", "show", "1-1"]).exit_code == 1
    refused = runner.invoke(cli, ["--config", str(config), "dead", "purge"])
    assert refused.exit_code == 2 and "--all" in refused.output
    assert json.loads(run("purge", ids[0], ids[1])) == {"purged": 2}
    assert json.loads(run("purge", "--endpoint", "ep_b")) == {"purged": 2}
    assert json.loads(run("redrive", "--vendor", "v_2")) == {
        "redriven": 0, "skipped": 0, "reasons": {}}  # fmt: skip
    assert json.loads(run("redrive", ids[2]))["redriven"] == 1
    assert redis_client.xlen(dead) == 0
    retry = f"{{{key_prefix}:events}}:retry"
    assert redis_client.zrange(retry, 0, -1) == ["ep_a:evt_2"]
    redis_client.xadd(dead, letter(9))  # type: ignore[arg-type]
    assert json.loads(run("purge", "--all")) == {"purged": 1}
