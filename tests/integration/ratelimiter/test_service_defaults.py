"""The service on its defaults, as the README shows it: real processes in a fresh directory.

The directory holds what a fresh clone has (``config/``) and the project's virtualenv,
nothing else: no Redis is configured, so the service and the commands share the
embedded one under ``.ratelimiter/``. The README's commands run as written, with the
service's port as the one change (8081 may be taken on a shared machine).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ratelimiter.embedded import free_port

ROOT = Path(__file__).resolve().parents[3]
VENV = Path(sys.executable).parent.parent


def readme_blocks(section: str, language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", body, re.DOTALL)


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A directory laid out as a fresh clone after the README's first command."""
    shutil.copytree(ROOT / "config", tmp_path / "config")
    (tmp_path / ".venv").symlink_to(VENV)
    return tmp_path


@pytest.fixture
def environ() -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RATELIMITER_")}
    environ["RATELIMITER_SERVICE_LISTEN"] = f"127.0.0.1:{free_port()}"
    environ["RATELIMITER_LOG_LEVEL"] = "warning"
    return environ


class Serving:
    """``ratelimiter serve`` as the README starts it, until stopped."""

    def __init__(self, clone: Path, environ: dict[str, str], command: str) -> None:
        self.url = f"http://{environ['RATELIMITER_SERVICE_LISTEN']}"
        self.process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=clone, env=environ,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        with httpx.Client(base_url=self.url) as http:
            for _ in range(400):
                try:
                    if http.get("/healthz").json()["store"] == "redis":
                        return
                except httpx.ConnectError:
                    pass
                if self.process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        pytest.fail(f"the service did not start: {self.errors()}")

    def errors(self) -> str:
        assert self.process.stderr is not None
        return self.process.stderr.read().decode(errors="replace") if self.process.poll() else ""

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            assert self.process.wait(timeout=15) == 0, self.errors()
        finally:
            self.process.kill()


@pytest.fixture
def serving(clone: Path, environ: dict[str, str]) -> Iterator[Serving]:
    (command,) = (block.strip() for block in readme_blocks("The rate limiter service", "sh")[:1])
    server = Serving(clone, environ, command)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def shell(clone: Path, environ: dict[str, str], script: str) -> str:
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], cwd=clone, env=environ,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, f"{script}\nfailed:\n{done.stderr}"
    return done.stdout


def test_the_readmes_service_commands_run_as_written(
    clone: Path, environ: dict[str, str], serving: Serving
) -> None:
    commands = readme_blocks("The rate limiter service", "sh")[1]
    port = environ["RATELIMITER_SERVICE_LISTEN"].rsplit(":", 1)[1]
    output = shell(clone, environ, commands.replace("localhost:8081", f"localhost:{port}"))
    assert re.search(r"^HTTP/1\.1 200", output, re.MULTILINE), output
    assert "x-ratelimit-limit: 200" in output.lower()  # the vendor's plan: growth, 200/minute
    printed = json_documents(output)
    (shown,) = [doc for doc in printed if isinstance(doc, dict) and "usage" in doc]
    assert (shown["plan"], shown["default"]) == ("growth", False)
    assert [(u["limit"], u["used"]) for u in shown["usage"]] == [
        ("100000/day", 1), ("200/minute", 1)
    ]  # fmt: skip
    decisions = [doc for doc in printed if isinstance(doc, dict) and "allowed" in doc]
    assert [(d["allowed"], d["limit"]) for d in decisions] == [(True, 200), (True, 50)]
    listed = next(doc for doc in printed if isinstance(doc, list))
    assert [record["vendor"] for record in listed] == ["v_1"]
    revoked = printed[-1]
    assert revoked["revoked"] is not None and revoked["plan"] == "basic"


def json_documents(output: str) -> list[object]:
    """Every JSON object or list the commands printed, in order."""
    decoder = json.JSONDecoder()
    documents: list[object] = []
    position = 0
    while (found := re.compile(r"[{\[]").search(output, position)) is not None:
        document, position = decoder.raw_decode(output, found.start())
        documents.append(document)
    return documents


def test_the_library_example_runs_as_written(clone: Path, environ: dict[str, str]) -> None:
    (example,) = readme_blocks("The rate limiter library", "python")
    done = subprocess.run([sys.executable, "-c", example], cwd=clone, capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr


def test_keys_and_counters_outlive_the_service_on_the_embedded_default(
    clone: Path, environ: dict[str, str]
) -> None:
    ratelimiter = ".venv/bin/ratelimiter"
    # made before the service runs: the command starts the embedded Redis for itself
    key = shell(clone, environ, f"{ratelimiter} key create --vendor v_1").strip()
    assert key.startswith("mk_live_")
    assert (clone / ".ratelimiter" / "appendonlydir").is_dir()
    auth = {"Authorization": f"Bearer {key}"}
    remaining = []
    for _ in range(2):
        server = Serving(clone, environ, f"{ratelimiter} serve")
        try:
            answer = httpx.get(f"{server.url}/v1/auth", headers=auth)
            remaining.append(answer.headers["x-ratelimit-remaining"])
            # the service's Redis is the one the commands use while it runs
            shown = json.loads(shell(clone, environ, f"{ratelimiter} vendor show v_1"))
            assert shown["usage"][1]["used"] == len(remaining)
        finally:
            server.stop()
    assert remaining == ["49", "48"]
    assert not (clone / ".ratelimiter" / "redis.sock").exists()
