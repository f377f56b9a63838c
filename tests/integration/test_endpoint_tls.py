"""Per-endpoint TLS: a custom CA, and client certificates (mTLS), through the daemon."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
import redis
import trio
import trustme
from click.testing import CliRunner
from conftest import (
    AsyncRedis,
    daemon_config,
    entries,
    publish,
    recorded_states,
    running_daemon,
    until,
)
from webhook_receiver import Receiver

from webhookd.cli import cli
from webhookd.config import Settings
from webhookd.endpoints import EndpointTls
from webhookd.errors import EndpointError
from webhookd.publisher import Publisher
from webhookd.registry import endpoint_tls

GUARD_S = 10


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def client_identity(ca: trustme.CA) -> EndpointTls:
    """What an operator registers: the vendor's CA, and the platform's client certificate."""
    issued = ca.issue_cert("webhookd.platform.example")
    return EndpointTls(
        ca_cert=ca.cert_pem.bytes().decode(),
        client_cert="".join(pem.bytes().decode() for pem in issued.cert_chain_pems),
        client_key=issued.private_key_pem.bytes().decode(),
    )


def server_context(ca: trustme.CA, *, require_client_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        ca.configure_trust(context)
    return context


@pytest.fixture
async def mtls_receiver(nursery: trio.Nursery, ca: trustme.CA) -> AsyncIterator[Receiver]:
    server = Receiver(tls=server_context(ca, require_client_cert=True))
    await nursery.start(server.serve)
    yield server


async def publish_and_settle(settings: Settings, aredis: AsyncRedis, count: int) -> None:
    assert settings.redis.url
    publisher = Publisher.from_url(settings.redis.url, stream=settings.stream.name)
    await publish(publisher, "order.created", vendor="v_1", data={"n": 1})
    publisher.close()

    async def settled() -> bool:
        states = [s["state"] for s in await recorded_states(aredis, settings.stream.name)]
        return len(states) == count and "scheduled" not in states

    with trio.fail_after(GUARD_S):
        await until(settled)


async def test_mtls_endpoint_presents_its_client_certificate(
    make_settings: Callable[..., Settings],
    mtls_receiver: Receiver,
    client_identity: EndpointTls,
    aredis: AsyncRedis,
) -> None:
    settings = make_settings(retry={"schedule": [], "jitter": 0})
    without_cert = EndpointTls(ca_cert=client_identity.ca_cert)
    async with running_daemon(settings) as daemon:
        now = time.time()
        mtls = await daemon.registry.add(
            "v_1", mtls_receiver.url("/mtls"), now_s=now, tls=client_identity
        )
        anonymous = await daemon.registry.add(
            "v_1", mtls_receiver.url("/anon"), now_s=now, tls=without_cert
        )
        system_cas = await daemon.registry.add("v_1", mtls_receiver.url("/system"), now_s=now)
        await publish_and_settle(settings, aredis, 3)
    assert len(mtls_receiver.to("/mtls")) == 1
    assert mtls_receiver.to("/anon") == [] and mtls_receiver.to("/system") == []
    dead = {
        fields["endpoint_id"]: fields for _, fields in await entries(aredis, settings.stream.dead)
    }
    assert set(dead) == {anonymous.id, system_cas.id}
    # TLS 1.3: the server refuses a missing client certificate after the client's side of
    # the handshake is done, so the client learns it as a connection closed unanswered
    # (reset, when the request was sent before the server closed).
    assert any(
        sign in dead[anonymous.id]["last_error"]
        for sign in ("TLS handshake", "closed the connection without a response",
                     "Connection reset by peer")
    )  # fmt: skip
    assert "certificate verify failed" in dead[system_cas.id]["last_error"]
    assert mtls.public()["client_cert"] == client_identity.client_cert
    stored = await aredis.hget(f"{settings.redis.key_prefix}:endpoints", mtls.id) or ""
    assert "PRIVATE KEY" not in stored


async def test_tls_settings_can_change_and_take_effect(
    make_settings: Callable[..., Settings],
    mtls_receiver: Receiver,
    client_identity: EndpointTls,
    aredis: AsyncRedis,
) -> None:
    settings = make_settings(retry={"schedule": [], "jitter": 0})
    async with running_daemon(settings) as daemon:
        endpoint = await daemon.registry.add(
            "v_1",
            mtls_receiver.url(),
            now_s=time.time(),
            tls=EndpointTls(ca_cert=client_identity.ca_cert),
        )
        await publish_and_settle(settings, aredis, 1)
        assert mtls_receiver.requests == []
        await daemon.registry.update(
            endpoint.id,
            {"client_cert": client_identity.client_cert, "client_key": client_identity.client_key},
        )
        await publish_and_settle(settings, aredis, 2)
    assert len(mtls_receiver.requests) == 1


def test_tls_settings_that_do_not_load_are_refused(client_identity: EndpointTls) -> None:
    assert endpoint_tls(None, None, None) is None
    with pytest.raises(EndpointError, match="needs its key"):
        endpoint_tls(None, client_identity.client_cert, None)
    with pytest.raises(EndpointError, match="ca_cert is not a PEM certificate"):
        endpoint_tls("not a certificate", None, None)
    with pytest.raises(EndpointError, match="do not load") as caught:
        endpoint_tls(None, client_identity.client_cert, "-----BEGIN PRIVATE KEY-----\nAAAA\n")
    assert "AAAA" not in str(caught.value)


def test_endpoint_add_takes_pem_files(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    client_identity: EndpointTls,
    redis_client: redis.Redis,
) -> None:
    from test_cli import write_config

    config = write_config(tmp_path / "w.toml", daemon_config(redis_url, key_prefix))
    files = {}
    for name in ("ca_cert", "client_cert", "client_key"):
        files[name] = tmp_path / f"{name}.pem"
        files[name].write_text(getattr(client_identity, name))
    result = CliRunner().invoke(
        cli,
        [
            "--config",
            str(config),
            "endpoint",
            "add",
            "--vendor",
            "v_1",
            "--url",
            "https://hooks.example.com/in",
            "--ca-cert",
            str(files["ca_cert"]),
            "--client-cert",
            str(files["client_cert"]),
            "--client-key",
            str(files["client_key"]),
        ],
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["ca_cert"] == client_identity.ca_cert
    assert "PRIVATE KEY" not in result.output
    bad = CliRunner().invoke(
        cli,
        [
            "--config",
            str(config),
            "endpoint",
            "add",
            "--vendor",
            "v_1",
            "--url",
            "https://hooks.example.com/in",
            "--client-cert",
            str(files["client_cert"]),
        ],
    )
    assert bad.exit_code == 1 and "needs its key" in bad.output
    assert redis_client.hlen(f"{key_prefix}:endpoints") == 1
