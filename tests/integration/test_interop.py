"""Deliveries verified by independent implementations, before and during a rotation.

``standardwebhooks`` (the Standard Webhooks reference library) and ``svix`` check the
``v1`` HMAC signatures. Neither verifies ``v1a`` (ed25519) signatures, so those are
checked with ``cryptography`` directly, from the specification's wording, and with
``webhookd.verify`` given the published ``whpk_`` key.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable

import pytest
import trio
from conftest import publish, running_daemon
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from webhook_receiver import Received, Receiver

from webhookd.config import Settings
from webhookd.endpoints import Endpoint
from webhookd.publisher import Publisher
from webhookd.verify import InvalidSignature, verify

standardwebhooks = pytest.importorskip("standardwebhooks")
svix_webhooks = pytest.importorskip("svix.webhooks")

GUARD_S = 10
OUTSIDER = "whsec_" + base64.b64encode(b"not this endpoint's secret, no.").decode()


def library_verifications(secret: str, request: Received) -> None:
    """Both libraries accept the delivery with this secret (they raise otherwise)."""
    payload = standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    assert payload["event_id"] == request.headers["webhook-id"]
    svix_webhooks.Webhook(secret).verify(request.body, request.headers)


def library_refusals(secret: str, request: Received) -> None:
    with pytest.raises(standardwebhooks.WebhookVerificationError):
        standardwebhooks.Webhook(secret).verify(request.body, request.headers)
    with pytest.raises(svix_webhooks.WebhookVerificationError):
        svix_webhooks.Webhook(secret).verify(request.body, request.headers)


def v1a_checks_out(public_key: str, request: Received) -> bool:
    """Any ``v1a,`` entry verifying under this key, checked with ``cryptography`` alone."""
    raw = base64.b64decode(public_key.removeprefix("whpk_"))
    key = Ed25519PublicKey.from_public_bytes(raw)
    headers = request.headers
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + request.body
    for entry in headers["webhook-signature"].split(" "):
        version, _, signature = entry.partition(",")
        if version == "v1a":
            try:
                key.verify(base64.b64decode(signature), signed)
                return True
            except Exception:
                continue
    return False


async def deliver(settings: Settings, receiver: Receiver, count: int) -> None:
    assert settings.redis.url
    publisher = Publisher.from_url(settings.redis.url, stream=settings.stream.name)
    await publish(publisher, "order.created", vendor="v_1", data={"order_id": f"ord_{count}"})
    publisher.close()
    with trio.fail_after(GUARD_S):
        await receiver.wait_for(count, "/hmac")
        await receiver.wait_for(count, "/ed25519")


async def test_deliveries_verify_with_independent_libraries_through_a_rotation(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings()
    async with running_daemon(settings) as daemon:
        now = time.time()
        hmac_ep = await daemon.registry.add("v_1", receiver.url("/hmac"), now_s=now)
        ed_ep = await daemon.registry.add(
            "v_1", receiver.url("/ed25519"), now_s=now, signing="ed25519"
        )
        assert ed_ep.public_key is not None and ed_ep.public_key.startswith("whpk_")

        await deliver(settings, receiver, 1)
        before = {path: receiver.to(path)[0] for path in ("/hmac", "/ed25519")}

        new_hmac = await daemon.registry.rotate_secret(hmac_ep.id, now_s=time.time())
        new_ed = await daemon.registry.rotate_secret(ed_ep.id, now_s=time.time())
        await deliver(settings, receiver, 2)
        during = {path: receiver.to(path)[1] for path in ("/hmac", "/ed25519")}

    # before the rotation: one signature per scheme, the libraries agree
    for endpoint, request in ((hmac_ep, before["/hmac"]), (ed_ep, before["/ed25519"])):
        library_verifications(endpoint.secret, request)
        assert verify(request.body, request.headers, endpoint.secret)
    assert before["/hmac"].headers["webhook-signature"].count(",") == 1
    assert v1a_checks_out(_key(ed_ep), before["/ed25519"])
    assert verify(before["/ed25519"].body, before["/ed25519"].headers, _key(ed_ep))

    # during the grace period: old and new secrets and keys all verify
    for old, new, request in (
        (hmac_ep, new_hmac, during["/hmac"]),
        (ed_ep, new_ed, during["/ed25519"]),
    ):
        assert new.secret != old.secret
        for endpoint in (old, new):
            library_verifications(endpoint.secret, request)
            assert verify(request.body, request.headers, endpoint.secret)
        library_refusals(OUTSIDER, request)
        assert len(request.headers["x-signature"].split(",")) == 2
    assert _key(new_ed) != _key(ed_ep)
    for endpoint in (ed_ep, new_ed):
        assert v1a_checks_out(_key(endpoint), during["/ed25519"])
        assert verify(during["/ed25519"].body, during["/ed25519"].headers, _key(endpoint))
    entries = during["/ed25519"].headers["webhook-signature"].split(" ")
    assert [entry.split(",")[0] for entry in entries] == ["v1", "v1", "v1a", "v1a"]


async def test_a_key_dropped_after_the_grace_no_longer_verifies(
    make_settings: Callable[..., Settings], receiver: Receiver
) -> None:
    settings = make_settings()
    async with running_daemon(settings) as daemon:
        old = await daemon.registry.add("v_1", receiver.url("/hmac"), now_s=time.time())
        ed_old = await daemon.registry.add(
            "v_1", receiver.url("/ed25519"), now_s=time.time(), signing="ed25519"
        )
        new = await daemon.registry.rotate_secret(old.id, now_s=time.time(), grace_s=0)
        ed_new = await daemon.registry.rotate_secret(ed_old.id, now_s=time.time(), grace_s=0)
        await deliver(settings, receiver, 1)
    request, ed_request = receiver.to("/hmac")[0], receiver.to("/ed25519")[0]
    library_verifications(new.secret, request)
    library_refusals(old.secret, request)
    with pytest.raises(InvalidSignature):
        verify(request.body, request.headers, old.secret)
    assert v1a_checks_out(_key(ed_new), ed_request)
    assert not v1a_checks_out(_key(ed_old), ed_request)


def _key(endpoint: Endpoint) -> str:
    assert endpoint.public_key is not None
    return endpoint.public_key
