"""The admin HTTP API on a running daemon: auth, endpoints, events, replay, dead letters."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import structlog.testing
import trio
from conftest import AsyncRedis, publish, running_daemon, until
from webhook_receiver import Receiver, Reply

from webhookd.config import Settings
from webhookd.daemon import Daemon
from webhookd.publisher import Publisher

TOKEN = {"Authorization": "Bearer test-admin-token"}


def client_for(daemon: Daemon) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://127.0.0.1:{daemon.admin_port}")


async def test_every_v1_route_needs_the_token_and_open_routes_do_not(
    make_settings: Callable[..., Settings],
) -> None:
    routes = [("GET", "/v1/endpoints"), ("POST", "/v1/endpoints"), ("GET", "/v1/endpoints/x"),
              ("PATCH", "/v1/endpoints/x"), ("DELETE", "/v1/endpoints/x"), ("GET", "/v1/events/x"),
              ("POST", "/v1/events/x/replay"), ("GET", "/v1/dead"),
              ("POST", "/v1/dead/redrive"), ("GET", "/v1/dead/x"), ("POST", "/v1/dead/purge"),
              ("GET", "/v1/status"), ("POST", "/v1/endpoints/x/test")]  # fmt: skip
    async with running_daemon(make_settings()) as daemon, client_for(daemon) as http:
        for method, path in routes:
            assert (await http.request(method, path)).status_code == 401, path
            wrong = {"Authorization": "Bearer nope"}
            assert (await http.request(method, path, headers=wrong)).status_code == 401, path
        assert (await http.get("/healthz")).json()["status"] == "ok"
        assert (await http.get("/readyz")).status_code == 200
        metrics = await http.get("/metrics")
        assert "webhookd_attempts_total" in metrics.text
        spec = (await http.get("/openapi.json")).json()
        assert spec["openapi"].startswith("3.")
        templated = {path.replace("/x", "/{id}") for _, path in routes}
        assert templated <= set(spec["paths"])


async def test_without_a_configured_token_every_v1_call_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    settings = make_settings(admin={"token": ""})
    async with running_daemon(settings) as daemon, client_for(daemon) as http:
        assert (await http.get("/v1/endpoints", headers=TOKEN)).status_code == 401
        assert (await http.get("/healthz")).status_code == 200


async def test_endpoint_crud(make_settings: Callable[..., Settings]) -> None:
    async with running_daemon(make_settings()) as daemon, client_for(daemon) as http:
        created = await http.post(
            "/v1/endpoints", headers=TOKEN,
            json={"vendor": "v_1", "url": "http://127.0.0.1:9/hook", "events": ["order.*"]},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["secret"].startswith("whsec_")
        path = f"/v1/endpoints/{endpoint['id']}"
        shown = {k: v for k, v in endpoint.items() if k != "secret"}
        assert (await http.get(path, headers=TOKEN)).json() == shown
        patched = await http.patch(path, headers=TOKEN, json={"enabled": False, "events": ["*"]})
        assert (patched.json()["enabled"], patched.json()["events"]) == (False, ["*"])
        listed = await http.get("/v1/endpoints", headers=TOKEN)
        assert [e["id"] for e in listed.json()] == [endpoint["id"]]
        assert "whsec_" not in listed.text
        bad = await http.post(
            "/v1/endpoints", headers=TOKEN, json={"vendor": "v", "url": "ftp://x"}
        )
        assert bad.status_code == 400 and "https://" in bad.json()["message"]
        assert (await http.post("/v1/endpoints", headers=TOKEN, content=b"{")).status_code == 400
        assert (await http.delete(path, headers=TOKEN)).status_code == 204
        assert (await http.get(path, headers=TOKEN)).status_code == 404
        assert (await http.put(path, headers=TOKEN)).status_code == 405


async def test_event_attempts_replay_and_dead_letters(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis
) -> None:
    settings = make_settings(retry={"schedule": [0.2], "jitter": 0})
    receiver.script("/ok", Reply(status=500))
    receiver.script("/dead", Reply(status=500), Reply(status=502))
    assert settings.redis.url
    publisher = Publisher.from_url(settings.redis.url, stream=settings.stream.name)
    async with running_daemon(settings) as daemon, client_for(daemon) as http:
        for path in ("/ok", "/dead"):
            await http.post("/v1/endpoints", headers=TOKEN,
                            json={"vendor": "v_1", "url": receiver.url(path)})  # fmt: skip
        event_id = await publish(publisher, "order.created", vendor="v_1", data={"n": 1})
        with trio.fail_after(10):
            await receiver.wait_for(2, "/ok")
            await until(lambda: aredis.xlen(settings.stream.dead), equals=1)
        record = (await http.get(f"/v1/events/{event_id}", headers=TOKEN)).json()
        states = {d["state"] for d in record["deliveries"]}
        assert states == {"delivered", "dead"}
        for delivery in record["deliveries"]:
            assert [a["attempt"] for a in delivery["attempt_log"]] == [1, 2]
            assert delivery["attempt_log"][0]["status"] == 500
        dead = (await http.get("/v1/dead", headers=TOKEN)).json()
        assert [d["event_id"] for d in dead] == [event_id]
        assert dead[0]["last_status"] == "502"
        redriven = await http.post("/v1/dead/redrive", headers=TOKEN)
        assert redriven.json() == {"redriven": 1, "skipped": 0, "reasons": {}}
        replayed = await http.post(f"/v1/events/{event_id}/replay", headers=TOKEN)
        assert replayed.status_code == 202
        assert len(replayed.json()["replayed"]) == 2
        with trio.fail_after(10):  # the redrive and the replay of /dead coalesce into one
            await receiver.wait_for(3, "/ok")
            await receiver.wait_for(3, "/dead")
        missing = await http.post("/v1/events/evt_nope/replay", headers=TOKEN)
        assert missing.status_code == 404
    assert {r.headers["x-event-id"] for r in receiver.requests} == {event_id}


async def test_endpoint_security_fields(make_settings: Callable[..., Settings]) -> None:
    async with running_daemon(make_settings()) as daemon, client_for(daemon) as http:
        created = await http.post(
            "/v1/endpoints",
            headers=TOKEN,
            json={
                "vendor": "v_1",
                "url": "http://127.0.0.1:9/hook",
                "signing": "ed25519",
                "events": ["order.*", "payment.captured"],
            },
        )
        assert created.status_code == 201, created.text
        endpoint = created.json()
        assert endpoint["signing"] == "ed25519"
        assert endpoint["public_key"].startswith("whpk_")
        assert "signing_key" not in endpoint and "whsk_" not in created.text
        path = f"/v1/endpoints/{endpoint['id']}"

        unknown = await http.patch(path, headers=TOKEN, json={"events": ["order.create"]})
        assert unknown.status_code == 400
        assert "did you mean 'order.created'?" in unknown.json()["message"]
        typo = await http.post(
            "/v1/endpoints",
            headers=TOKEN,
            json={"vendor": "v_1", "url": "http://127.0.0.1:9/h", "events": ["refund.*"]},
        )
        assert typo.status_code == 400 and "matches no event type" in typo.json()["message"]
        bad_signing = await http.post(
            "/v1/endpoints",
            headers=TOKEN,
            json={"vendor": "v_1", "url": "http://127.0.0.1:9/h", "signing": "rsa"},
        )
        assert bad_signing.status_code == 400
        bad_tls = await http.patch(path, headers=TOKEN, json={"ca_cert": "nonsense"})
        assert bad_tls.status_code == 400 and "ca_cert" in bad_tls.json()["message"]

        rotated = await http.post(f"{path}/rotate-secret", headers=TOKEN, json={"grace": 0})
        assert rotated.status_code == 200
        assert rotated.json()["secret"] != endpoint["secret"]
        assert rotated.json()["public_key"] != endpoint["public_key"]
        stored = await daemon.registry.get(endpoint["id"])
        assert len(stored.keys_at(time.time())) == 1  # grace 0: the old secret is gone
        for grace in (-1, "soon", True, None):
            refused = await http.post(
                f"{path}/rotate-secret",
                headers=TOKEN,
                json={"grace": grace} if grace is not None else [],
            )
            assert refused.status_code == 400, grace
        default = await http.post(f"{path}/rotate-secret", headers=TOKEN)
        assert default.status_code == 200
        assert len((await daemon.registry.get(endpoint["id"])).keys_at(time.time())) == 2


async def test_bad_bodies_answer_400_and_secrets_show_only_when_made_rotated_or_revealed(
    make_settings: Callable[..., Settings],
) -> None:
    async with running_daemon(make_settings()) as daemon, client_for(daemon) as http:
        new = {"vendor": "v_1", "url": "http://127.0.0.1:9/hook"}
        for events in ([1], [["order.*"]], "order.*", [None], {"a": 1}):
            refused = await http.post(
                "/v1/endpoints", headers=TOKEN, json={**new, "events": events}
            )
            assert refused.status_code == 400, events
        deep = b'{"vendor": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
        assert (await http.post("/v1/endpoints", headers=TOKEN, content=deep)).status_code == 400
        non_ascii = json.dumps({**new, "ca_cert": "-----BEGIN CERTIFICATE-----\nü\n"})
        lone_surrogate = json.dumps(new)[:-1] + ', "ca_cert": "\\udcff"}'
        for body in (non_ascii, lone_surrogate):
            tls = await http.post("/v1/endpoints", headers=TOKEN, content=body.encode())
            assert tls.status_code == 400 and "ca_cert" in tls.json()["message"], body

        made = (await http.post("/v1/endpoints", headers=TOKEN, json=new)).json()
        path = f"/v1/endpoints/{made['id']}"
        assert "secret" not in (await http.get(path, headers=TOKEN)).json()
        patched = await http.patch(path, headers=TOKEN, json={"events": [2]})
        assert patched.status_code == 400
        assert "whsec_" not in (await http.patch(path, headers=TOKEN, json={})).text
        with structlog.testing.capture_logs() as logs:
            revealed = await http.post(f"{path}/reveal-secret", headers=TOKEN)
        assert revealed.json()["secret"] == made["secret"]
        [entry] = [e for e in logs if e["event"] == "admin.secret_revealed"]
        assert entry["endpoint_id"] == made["id"] and made["secret"] not in str(entry)
        too_long = await http.post(f"{path}/rotate-secret", headers=TOKEN, json={"grace": 2592001})
        assert too_long.status_code == 400 and "2592000" in too_long.json()["message"]
        longest = await http.post(f"{path}/rotate-secret", headers=TOKEN, json={"grace": 2592000})
        assert longest.status_code == 200 and longest.json()["secret"] != made["secret"]

        for method, where in (("TRACE", "/v1/endpoints"), ("TRACE", path), ("POST", "/healthz"),
                              ("DELETE", "/metrics"), ("TRACE", "/openapi.json")):  # fmt: skip
            answer = await http.request(method, where, headers=TOKEN)
            assert answer.status_code == 405 and answer.headers["allow"], (method, where)
        unknown = await http.get("/v1/endpoints", headers=TOKEN, params={"venodr": "v_1"})
        assert unknown.status_code == 400
        for query in ("limit=0", "limit=", "limit=5&=", "limit=5&x="):
            assert (await http.get(f"/v1/dead?{query}", headers=TOKEN)).status_code == 400, query
        redrive_all = await http.post("/v1/dead/redrive?endpoint_id=", headers=TOKEN)
        assert redrive_all.status_code == 400
        odd = await http.post(f"{path}/rotate-secret", headers=TOKEN, json={"grce": 0})
        assert odd.status_code == 400 and "grce" in odd.json()["message"]
        null = await http.post("/v1/endpoints", headers=TOKEN, json={**new, "secret": None})
        assert null.status_code == 400


async def test_history_pages_filters_stats_and_recovery(
    make_settings: Callable[..., Settings], receiver: Receiver, aredis: AsyncRedis
) -> None:
    """Delivery history over two partitions, newest first, page by page; the per-minute
    figures; a disabled endpoint's held deliveries recovered through the API."""
    settings = make_settings(stream={"partitions": 2}, retry={"schedule": [0.2], "jitter": 0})
    receiver.script("/flaky", Reply(status=500))
    assert settings.redis.url
    publisher = Publisher.from_url(settings.redis.url, stream=settings.stream.name, partitions=2)
    async with running_daemon(settings) as daemon, client_for(daemon) as http:
        ids = {}
        for path in ("/ok", "/flaky"):
            vendor = "v_1" if path == "/ok" else "v_2"
            body = {"vendor": vendor, "url": receiver.url(path)}
            created = await http.post("/v1/endpoints", headers=TOKEN, json=body)
            ids[path] = created.json()["id"]
        for n in range(3):
            for vendor in ("v_1", "v_2"):
                await publish(publisher, "order.created", vendor=vendor, data={"n": n})
        with trio.fail_after(10):
            await receiver.wait_for(3, "/ok")
            await receiver.wait_for(4, "/flaky")  # one failure, then three successes

        async def history(**query: object) -> tuple[list[dict[str, object]], str | None]:
            answer = await http.get("/v1/deliveries", headers=TOKEN, params=query)
            assert answer.status_code == 200, answer.text
            return answer.json(), answer.headers.get("x-next-cursor")

        await until(lambda: history(limit=100), equals=(ANY_OF_LENGTH(7), None))
        everything, _ = await history(limit=100)
        pages, cursor = [], None
        while True:
            page, cursor = await history(limit=2, **({"cursor": cursor} if cursor else {}))
            pages.append(page)
            if cursor is None:
                break
        assert [item for page in pages for item in page] == everything
        assert all(len(page) <= 2 for page in pages)
        failed, _ = await history(outcome="failed")
        assert [(f["endpoint_id"], f["status"]) for f in failed] == [(ids["/flaky"], 500)]
        retried = [(item["attempt"], item["state"]) for item in everything
                   if item["event_id"] == failed[0]["event_id"]]  # fmt: skip
        assert retried == [(2, "delivered"), (1, "failed")]  # newest first
        only_ok, _ = await history(endpoint_id=ids["/ok"])
        assert {item["state"] for item in only_ok} == {"delivered"} and len(only_ok) == 3
        assert (await http.get("/v1/deliveries?cursor=nope", headers=TOKEN)).status_code == 400
        assert (await http.get("/v1/deliveries?outcome=x", headers=TOKEN)).status_code == 400

        minutes = (await http.get("/v1/stats?minutes=5", headers=TOKEN)).json()
        assert len(minutes) == 5
        assert sum(m["delivered"] for m in minutes) == 6
        assert sum(m["failed"] for m in minutes) == 1

        await http.patch(f"/v1/endpoints/{ids['/ok']}", headers=TOKEN, json={"enabled": False})
        held_id = await publish(publisher, "order.created", vendor="v_1", data={"n": 9})
        await until(lambda: history(outcome="held"), equals=(ANY_OF_LENGTH(1), None))
        assert len(receiver.to("/ok")) == 3
        await http.patch(f"/v1/endpoints/{ids['/ok']}", headers=TOKEN, json={"enabled": True})
        recovered = await http.post(f"/v1/endpoints/{ids['/ok']}/recover", headers=TOKEN)
        assert recovered.status_code == 202
        assert recovered.json() == {"recovered": 1, "held": 1, "redriven": 0}
        with trio.fail_after(10):
            arrived = await receiver.wait_for(4, "/ok")
        assert arrived[-1].headers["x-event-id"] == held_id
        bad = await http.post(f"/v1/endpoints/{ids['/ok']}/recover", headers=TOKEN,
                              json={"since": "yesterday"})  # fmt: skip
        assert bad.status_code == 400
        missing = await http.post("/v1/endpoints/ep_nope/recover", headers=TOKEN)
        assert missing.status_code == 404


class ANY_OF_LENGTH:
    """Equal to any list of this length: waits for a count without fixing the items."""

    def __init__(self, length: int) -> None:
        self.length = length

    def __eq__(self, other: object) -> bool:
        return isinstance(other, list) and len(other) == self.length

    def __hash__(self) -> int:
        return self.length


async def test_an_endpoint_with_unknown_fields_is_refused(
    make_settings: Callable[..., Settings],
) -> None:
    async with running_daemon(make_settings()) as daemon, client_for(daemon) as http:
        made = await http.post("/v1/endpoints", headers=TOKEN, json={
            "vendor": "v_1", "url": "http://127.0.0.1:9/h", "retries": 3})  # fmt: skip
        assert made.status_code == 400 and "retries" in made.json()["message"]
        assert (await http.get("/v1/endpoints", headers=TOKEN)).json() == []
