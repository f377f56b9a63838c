"""A real nginx with the shipped config/nginx/ratelimiter.conf, in front of a tiny API.

nginx (Debian's package; scripts/test installs it) runs on loopback with a temporary
prefix, the shipped file templated to this test's ports; the service runs in the test
on the session's Redis with ``deny_status = 403``, as the shipped file asks.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio
from service_harness import key_store, running_service, service_settings, write_plans

from httpserve import Request, Response, serve
from ratelimiter.config import Settings
from webhookd.embedded import free_port

SHIPPED = Path(__file__).resolve().parents[3] / "config" / "nginx" / "ratelimiter.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

pytestmark = pytest.mark.skipif(
    not os.access(NGINX, os.X_OK),
    reason=f"nginx not found at {NGINX}: apt-get install nginx (scripts/test does)",
)


def nginx_config(prefix: Path, service_port: int, api_port: int, port: int) -> Path:
    shipped = SHIPPED.read_text()
    for old, new in [
        ("server 127.0.0.1:8081;", f"server 127.0.0.1:{service_port};"),
        ("server 127.0.0.1:8000;", f"server 127.0.0.1:{api_port};"),
        ("listen 127.0.0.1:8080;", f"listen 127.0.0.1:{port};"),
    ]:
        assert old in shipped, f"{SHIPPED} no longer says {old!r}"
        shipped = shipped.replace(old, new)
    (prefix / "ratelimiter.conf").write_text(shipped)
    temp_paths = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    main = prefix / "nginx.conf"
    main.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"worker_processes 1;\nerror_log {prefix / 'error.log'} warn;\n"
        f"pid {prefix / 'nginx.pid'};\nevents {{ worker_connections 256; }}\n"
        f"http {{\n    access_log off;\n{temp_paths}\n"
        f"    include {prefix / 'ratelimiter.conf'};\n}}\n"
    )
    return main


async def api(request: Request) -> Response:
    return Response.json(200, {"api": "ok", "path": request.target})


@pytest.fixture
async def nginx_url(
    tmp_path: Path, redis_url: str, key_prefix: str, nursery: trio.Nursery
) -> AsyncIterator[str]:
    settings = service_settings(
        redis_url, key_prefix, write_plans(tmp_path), deny_status=403, default_plan="large",
        trust_key_header=True,
    )  # fmt: skip
    service = await nursery.start(_serve_service, settings)
    api_port = await nursery.start(partial(serve, server_name="api"), api, "127.0.0.1", 0)
    port = free_port()
    config = nginx_config(tmp_path, service, api_port, port)
    process = await trio.lowlevel.open_process(
        [NGINX, "-p", str(tmp_path), "-c", str(config), "-e", str(tmp_path / "error.log"),
         "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        with trio.fail_after(10):
            while True:
                if process.poll() is not None:
                    error_log = (tmp_path / "error.log").read_text(errors="replace")
                    pytest.fail(f"nginx exited with {process.returncode}:\n{error_log}")
                try:
                    await (await trio.open_tcp_stream("127.0.0.1", port)).aclose()
                    break
                except OSError:
                    await trio.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        with trio.move_on_after(5, shield=True):
            await process.wait()
        process.kill()


async def _serve_service(settings: Settings, task_status: trio.TaskStatus[int]) -> None:
    async with running_service(settings) as url:
        task_status.started(int(url.rsplit(":", 1)[1]))
        await trio.sleep_forever()


RATE_HEADERS = ("x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset",
                "ratelimit-policy", "ratelimit")  # fmt: skip


async def test_the_first_calls_pass_then_the_client_gets_429_with_the_headers(
    nginx_url: str, redis_url: str, key_prefix: str
) -> None:
    async with key_store(redis_url, key_prefix) as keys, httpx.AsyncClient() as http:
        small, _ = await keys.create("v_1", "small", now_s=0)
        auth = {"Authorization": f"Bearer {small}"}
        for remaining in ("2", "1", "0"):
            answer = await http.get(f"{nginx_url}/api/v2/orders?page=1", headers=auth)
            assert answer.status_code == 200
            assert answer.json() == {"api": "ok", "path": "/api/v2/orders?page=1"}
            assert all(name in answer.headers for name in RATE_HEADERS)
            assert answer.headers["x-ratelimit-limit"] == "3"
            assert answer.headers["x-ratelimit-remaining"] == remaining
            assert "retry-after" not in answer.headers
        refused = await http.post(f"{nginx_url}/api/v2/orders", headers=auth, content=b"{}")
        assert refused.status_code == 429
        assert all(name in refused.headers for name in RATE_HEADERS)
        assert refused.headers["x-ratelimit-remaining"] == "0"
        retry_after = int(refused.headers["retry-after"])
        assert 0 < retry_after <= 120  # the sliding-window counter: up to two windows
        body = refused.json()
        assert (body["error"], body["retry_after"]) == ("rate_limit_exceeded", retry_after)


async def test_keys_of_different_plans_get_their_own_limits_and_unknown_keys_401(
    nginx_url: str, redis_url: str, key_prefix: str
) -> None:
    async with key_store(redis_url, key_prefix) as keys, httpx.AsyncClient() as http:
        small, _ = await keys.create("v_1", "small", now_s=0)
        large, _ = await keys.create("v_2", "large", now_s=0)

        async def statuses(key: str, count: int) -> list[int]:
            headers = {"Authorization": f"Bearer {key}"}
            return [(await http.get(f"{nginx_url}/x", headers=headers)).status_code
                    for _ in range(count)]  # fmt: skip

        assert await statuses(small, 4) == [200, 200, 200, 429]
        assert await statuses(large, 6) == [200] * 5 + [429]
        unknown = await http.get(f"{nginx_url}/x", headers={"Authorization": "Bearer mk_live_no"})
        assert unknown.status_code == 401
        assert unknown.json()["error"] == "invalid_api_key"
        # A made-up token of another form is the upstream's business: the client is
        # limited by its address, like a client without one, never by the token.
        made_up = await http.get(f"{nginx_url}/x", headers={"Authorization": "Bearer tok1"})
        assert (made_up.status_code, made_up.headers["x-ratelimit-remaining"]) == (200, "4")
        # Without a key, the client address is limited on the default plan ("large"),
        # whatever it claims about itself.
        spoofed = {"X-RateLimit-Key": "someone-else", "X-RateLimit-Plan": "basic"}
        anonymous = await http.get(f"{nginx_url}/x", headers=spoofed)
        assert (anonymous.status_code, anonymous.headers["x-ratelimit-limit"]) == (200, "5")
        assert anonymous.headers["x-ratelimit-remaining"] == "3"
