"""Real processes for tests that drive webhookd from outside, as operators do.

The ``webhookd`` command (``run`` daemons, CLI calls) with a config file, and a
redis-server of a test's own that can be killed and started again on the same port and
data directory. Everything here is awaited under trio, so a test's ``fail_after``
bounds it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import redis
import trio
from redis.backoff import NoBackoff
from redis.retry import Retry

from webhookd.embedded import find_redis_server, free_port

WEBHOOKD = str(Path(sys.executable).parent / "webhookd")
STOP_GRACE_S = 10.0


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def write_config(path: Path, data: dict[str, dict[str, Any]]) -> Path:
    lines = []
    for section, values in data.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def no_retry_client(url: str) -> redis.Redis:
    """A client that never retries by itself, so a command that failed is seen to fail."""
    return redis.Redis.from_url(
        url, decode_responses=True, socket_timeout=2, socket_connect_timeout=1,
        retry=Retry(NoBackoff(), 0),
    )  # fmt: skip


@contextlib.contextmanager
def serving(args: list[str], base_url: str, env: dict[str, str]) -> Iterator[None]:
    """A server process (``webhookd run``, ``ratelimiter serve``) for the block: started,
    waited for until ``/healthz`` answers (20 s at most, or until it exits), and stopped
    with SIGTERM (killed if it lingers)."""
    process = subprocess.Popen(args, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{base_url}/healthz").raise_for_status()
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=STOP_GRACE_S)
        finally:
            process.kill()


def clean_environ() -> dict[str, str]:
    """This environment without ``WEBHOOKD_*``, so only the config file speaks."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}


async def webhookd_cli(config: Path, *args: str) -> str:
    """Run one ``webhookd --config CONFIG ARGS…`` command; its stdout, or AssertionError."""
    result = await trio.run_process(
        [WEBHOOKD, "--config", str(config), *args],
        capture_stdout=True, capture_stderr=True, check=False, env=clean_environ(),
    )  # fmt: skip
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, f"webhookd {' '.join(args)} exited {result.returncode}:\n" + (
        stdout + stderr
    )
    return stdout


async def webhookd_cli_json(config: Path, *args: str) -> Any:
    return json.loads(await webhookd_cli(config, *args))


class DaemonProcess:
    """``webhookd run`` in a process of its own, its output appended to ``log_path``.

    Its admin API listens on a port of its own (``WEBHOOKD_ADMIN_LISTEN``), kept across
    restarts, so ``/healthz`` tells when it is up.
    """

    def __init__(self, config: Path, log_path: Path) -> None:
        self.config = config
        self.log_path = log_path
        self.admin_port = free_port()
        self._process: trio.Process | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self) -> None:
        assert not self.running
        with self.log_path.open("ab") as log:
            self._process = await trio.lowlevel.open_process(
                [WEBHOOKD, "--config", str(self.config), "run"],
                stdout=log, stderr=subprocess.STDOUT,
                env={**clean_environ(), "WEBHOOKD_ADMIN_LISTEN": f"127.0.0.1:{self.admin_port}"},
            )  # fmt: skip

    async def ready(self, timeout_s: float = 20.0) -> None:
        """Wait until its admin API answers ``/healthz``: the daemon is up by then."""
        url = f"http://127.0.0.1:{self.admin_port}/healthz"
        async with httpx.AsyncClient(timeout=1.0) as client:
            with trio.fail_after(timeout_s):
                while True:
                    assert self.running, f"webhookd run exited:\n{self.log_tail()}"
                    try:
                        if (await client.get(url)).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no drain, no flush, exactly like a crash."""
        if self._process is not None:
            self._process.kill()
            await self._process.wait()

    async def stop(self) -> None:
        """SIGTERM and wait for the graceful shutdown; SIGKILL if it takes too long."""
        if self._process is None or self._process.returncode is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        with trio.move_on_after(STOP_GRACE_S):
            await self._process.wait()
        await self.kill()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextlib.asynccontextmanager
async def running_daemons(
    config: Path, log_dir: Path, count: int
) -> AsyncIterator[list[DaemonProcess]]:
    """``count`` daemons on one config; stopped on exit, even when the test was cancelled."""
    daemons = [DaemonProcess(config, log_dir / f"daemon-{n}.log") for n in range(count)]
    try:
        for daemon in daemons:
            await daemon.start()
        for daemon in daemons:
            await daemon.ready()
        yield daemons
    finally:
        with trio.CancelScope(shield=True):
            async with trio.open_nursery() as nursery:
                for daemon in daemons:
                    nursery.start_soon(daemon.stop)


class RedisServer:
    """A redis-server of one test's own; ``kill`` and ``start`` keep its port and directory,
    so a restart finds what it had persisted (with ``appendonly``) or nothing."""

    def __init__(self, data_dir: Path, *, appendonly: bool) -> None:
        self.data_dir = data_dir
        self.appendonly = appendonly
        self.port = free_port()
        self._process: trio.Process | None = None
        data_dir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--save", "",
            "--logfile", "redis.log",
        ]  # fmt: skip
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        self._process = await trio.lowlevel.open_process(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        with trio.fail_after(10):
            while not self._answers():
                assert self._process.returncode is None, "redis-server exited at start"
                await trio.sleep(0.02)

    def _answers(self) -> bool:
        try:
            with no_retry_client(self.url) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    async def kill(self) -> None:
        """SIGKILL: whatever was not yet written to the append-only file is gone."""
        if self._process is not None:
            self._process.kill()
            await self._process.wait()


@contextlib.asynccontextmanager
async def running_redis_server(data_dir: Path, *, appendonly: bool) -> AsyncIterator[RedisServer]:
    server = RedisServer(data_dir, appendonly=appendonly)
    try:
        await server.start()
        yield server
    finally:
        with trio.CancelScope(shield=True):
            await server.kill()
