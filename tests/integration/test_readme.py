"""The README's publishing examples, run as a reader would copy them, against the
embedded Redis a ``webhookd`` command starts (a unix socket under ``.webhookd/``)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import redis

from processes import clean_environ
from webhookd.embedded import running_redis

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
