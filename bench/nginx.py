"""The sink every client of the benchmark POSTs to: nginx answering ``200 "ok"``.

One nginx worker listens on two loopback ports, plain HTTP and HTTPS (TLS 1.3 only,
a certificate for 127.0.0.1 from a test CA that ``trustme`` makes for the run), with
the same locations on both. Each location logs ``$msec $http_x_event_id`` to a file
of its own, which `Receipts` reads back: receipt times by event id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import ssl
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import trustme

from processes import spawn
from webhookd.embedded import free_port

NGINX = "/usr/sbin/nginx"
STALL_S = 10.0  # no new receipt for this long: whatever is missing is reported lost
TEMP_MODULES = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")

NGINX_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    log_format bench '$msec $http_x_event_id';
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_buffer_size 64k;
{temp_paths}
    server {{
        listen 127.0.0.1:{port};
        listen 127.0.0.1:{tls_port} ssl;
        ssl_certificate {dir}/server.pem;
        ssl_certificate_key {dir}/server.key;
        ssl_protocols TLSv1.3;
{locations}
    }}
}}
"""
LOCATION = """\
        location /{name}/ {{
            access_log {dir}/{name}.log bench buffer=256k flush=1s;
            return 200 "ok";
        }}
"""


@dataclass(frozen=True, slots=True)
class Sink:
    port: int  # plain HTTP
    tls_port: int  # HTTPS
    workers: list[int]  # nginx's worker processes: where its CPU time goes
    ca_pem: str  # the test CA that signed the sink's certificate

    def port_of(self, scheme: str) -> int:
        return self.tls_port if scheme == "https" else self.port

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts the test CA only."""
        return ssl.create_default_context(cadata=self.ca_pem)


def start_nginx(stack: contextlib.ExitStack, workdir: Path, locations: Sequence[str]) -> Sink:
    """nginx on two free loopback ports, every path (and the test CA) under ``workdir``."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    server_cert = ca.issue_cert("127.0.0.1")
    server_cert.private_key_pem.write_to_path(str(workdir / "server.key"))
    for index, blob in enumerate(server_cert.cert_chain_pems):
        blob.write_to_path(str(workdir / "server.pem"), append=index > 0)
    port, tls_port = free_port(), free_port()
    built = subprocess.run([NGINX, "-V"], capture_output=True, text=True).stderr
    temp_paths = "".join(
        f"    {module}_temp_path {workdir}/{module}_temp;\n"
        for module in TEMP_MODULES
        if f"--without-http_{module}_module" not in built
    )
    conf = workdir / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            dir=workdir,
            port=port,
            tls_port=tls_port,
            temp_paths=temp_paths,
            locations="".join(LOCATION.format(dir=workdir, name=name) for name in locations),
        )
    )
    args = [NGINX, "-p", str(workdir), "-c", str(conf), "-e", str(workdir / "error.log")]
    process = spawn(stack, [*args, "-g", "daemon off;"], workdir / "nginx.out")
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    sink = Sink(port, tls_port, [], ca.cert_pem.bytes().decode())
    deadline = time.monotonic() + 10
    while not (check_sink(sink, "http", locations[0]) and check_sink(sink, "https", locations[0])):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"nginx did not start: {(workdir / 'error.log').read_text()}")
        time.sleep(0.05)
    return dataclasses.replace(sink, workers=[int(pid) for pid in children.read_text().split()])


def check_sink(sink: Sink, scheme: str, location: str) -> bool:
    """Two 1 KiB POSTs on one connection: both 200, the connection kept alive, and
    over HTTPS the certificate verified against the test CA and TLS 1.3 spoken."""
    port = sink.port_of(scheme)
    connection = (
        http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=sink.client_context())
        if scheme == "https"
        else http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    )
    try:
        sockets = []
        for _ in range(2):
            connection.request("POST", f"/{location}/check", body=b"x" * 1024)
            response = connection.getresponse()
            if response.status != 200 or response.read() != b"ok":
                raise SystemExit(f"nginx answered {response.status} to a POST")
            sockets.append(connection.sock)
        if sockets[0] is not sockets[1]:
            raise SystemExit("nginx closed a keep-alive connection after a POST")
        if isinstance(sockets[0], ssl.SSLSocket) and sockets[0].version() != "TLSv1.3":
            raise SystemExit(f"nginx spoke {sockets[0].version()}, not TLSv1.3")
        return True
    except OSError:
        return False
    finally:
        connection.close()


class Receipts:
    """What nginx logged in one access log: event id -> receipt time (epoch ms)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._offset = 0
        self._partial = b""
        self.at_ms: dict[str, float] = {}
        self.duplicates = 0

    def poll(self) -> list[str]:
        """Read what nginx flushed since the last poll; returns the ids new to us."""
        if not self._path.exists():
            return []
        with self._path.open("rb") as file:
            file.seek(self._offset)
            chunk = file.read()
        self._offset += len(chunk)
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        fresh = []
        for line in lines:
            msec, _, event_id = line.decode().partition(" ")
            if event_id in self.at_ms:
                self.duplicates += 1
            else:
                self.at_ms[event_id] = float(msec) * 1000
                fresh.append(event_id)
        return fresh

    def wait_for(self, ids: Sequence[str]) -> list[str]:
        """Wait until every id was received or progress stalled; returns the missing ids."""
        missing = set(ids).difference(self.at_ms)
        progress = time.monotonic()
        while missing and time.monotonic() - progress < STALL_S:
            time.sleep(0.1)
            fresh = self.poll()
            if missing.intersection(fresh):
                missing.difference_update(fresh)
                progress = time.monotonic()
        return sorted(missing)
