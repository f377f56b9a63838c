"""The README's publishing examples, run as a reader would copy them, against the
embedded Redis a ``webhookd`` command starts (a unix socket under ``.webhookd/``)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis
from conftest import TEST_SECRETS_KEY

from processes import clean_environ
from webhookd.embedded import free_port, running_redis

README = Path(__file__).resolve().parents[2] / "README.md"


def block(name: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- readme-test: {name} -->\n```\w+\n(.*?)```", text, re.DOTALL)
    assert match, f"no block {name} in {README}"
    return match.group(1)


def test_the_python_publish_example_reaches_the_embedded_redis(tmp_path: Path) -> None:
    with running_redis(tmp_path / ".webhookd", persistent=False, unix_socket=True) as server:
        result = subprocess.run(
            [sys.executable, "-c", block("publish")], cwd=tmp_path, env=clean_environ(),
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        client = redis.Redis.from_url(server.url, decode_responses=True)
        try:
            [(entry_id, fields)] = client.xrange("webhookd:events")
        finally:
            client.close()
    assert result.stdout.strip() == f"evt_{entry_id}"
    assert fields == {"type": "order.created", "vendor": "v_1", "data": '{"order_id":"ord_1"}'}


def test_the_portal_example_serves_a_vendor_with_the_token_it_prints(
    redis_url: str, key_prefix: str, tmp_path: Path
) -> None:
    """The portal block run from the repository root as written; only where the daemon
    listens and keeps its data is redirected, so it shares nothing with other runs."""
    port = free_port()
    where = {"ADMIN_LISTEN": f"127.0.0.1:{port}", "REDIS_URL": redis_url,
             "REDIS_KEY_PREFIX": key_prefix, "STREAM_NAME": f"{key_prefix}:events",
             "STREAM_DEAD": f"{key_prefix}:dead", "STREAM_OPS": f"{key_prefix}:ops",
             "REDIS_DATA_DIR": str(tmp_path), "SECRETS_KEY": TEST_SECRETS_KEY,
             "LOG_LEVEL": "error"}  # fmt: skip
    env = {**clean_environ(), **{f"WEBHOOKD_{name}": value for name, value in where.items()}}
    script = block("portal").replace("127.0.0.1:8080", f"127.0.0.1:{port}")
    printed, errors = tmp_path / "printed", tmp_path / "errors"
    with printed.open("w") as out, errors.open("w") as err:  # files: the daemon keeps them
        result = subprocess.run(
            ["bash", "-c", script + 'echo "daemon $!"'], cwd=README.parent, env=env,
            stdout=out, stderr=err, timeout=60, check=False,
        )  # fmt: skip
    words = printed.read_text().split()
    token, daemon = words[0], int(words[-1])
    try:
        assert result.returncode == 0, errors.read_text()
        assert token.startswith("wpt_")
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while True:
            try:
                page = httpx.get(f"{base}/portal/")
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline, "the daemon did not start"
                time.sleep(0.05)
        assert page.status_code == 200 and "webhookd portal" in page.text
        mine = httpx.get(f"{base}/v1/endpoints", headers={"Authorization": f"Bearer {token}"})
        assert mine.status_code == 200 and mine.json() == []
        assert httpx.get(f"{base}/v1/vendors", headers={"Authorization": f"Bearer {token}"}
                         ).status_code == 403  # fmt: skip
    finally:
        os.kill(daemon, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while _alive(daemon) and time.monotonic() < deadline:
            time.sleep(0.05)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
