"""The admin API keeps to its OpenAPI description: schemathesis, every check, on a real process.

schemathesis reads ``/openapi.json`` from a running ``webhookd run`` and sends requests
generated from it, valid ones and ones that break it, to every operation; each answer
must conform (status, headers, body), valid requests must not be refused as bad,
invalid ones must be, and nothing may answer 5xx. Requests carry the admin token; the
``ignored_auth`` check also tries them without it and with a made-up one. The stateful
phase follows the description's links: an endpoint made by ``POST /v1/endpoints`` is
then shown, changed, rotated, revealed and removed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import schemathesis
import trustme
from conftest import daemon_config
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from processes import WEBHOOKD, clean_environ, serving, write_config
from webhookd.embedded import free_port

TOKEN = "test-admin-token"
EXAMPLES_PER_OPERATION = 20
HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def admin_url(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``webhookd run`` on a free admin port, with a token and keys of its own."""
    directory = tmp_path_factory.mktemp("admin-openapi")
    port = free_port()
    config = write_config(
        directory / "webhookd.toml",
        daemon_config(
            redis_url, f"t{uuid.uuid4().hex[:12]}",
            admin={"listen": f"127.0.0.1:{port}", "token": TOKEN}, log={"level": "error"},
        ),
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with serving([WEBHOOKD, "--config", str(config), "run"], url, clean_environ()):
        yield url


def sends_nothing(value: Any) -> bool:
    """Whether a query parameter's value leaves the request without that parameter."""
    return value is None or (isinstance(value, list) and all(map(sends_nothing, value)))


@pytest.fixture(scope="module")
def described(admin_url: str) -> Any:
    """The served description, with strategies for its own string formats: https URLs
    on made-up hosts, and one certificate with its key (so a pair always matches)."""
    identity = trustme.CA().issue_cert("hooks.example")
    label = st.from_regex(r"[a-z][a-z0-9]{0,15}", fullmatch=True)
    path = st.from_regex(r"(/[A-Za-z0-9._~-]{1,12}){0,3}", fullmatch=True)
    url = st.builds("https://{}.example{}".format, label, path)
    schemathesis.openapi.format("webhook-url", url)
    moment = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1))
    schemathesis.openapi.format(
        "rfc3339", moment.map(lambda at: at.replace(tzinfo=UTC).isoformat())
    )
    schemathesis.openapi.format(
        "pem-certificate", st.just(identity.cert_chain_pems[0].bytes().decode())
    )
    schemathesis.openapi.format(
        "pem-private-key", st.just(identity.private_key_pem.bytes().decode())
    )
    return schemathesis.openapi.from_url(f"{admin_url}/openapi.json")


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_the_admin_api_keeps_to_its_description(described: Any, mode: GenerationMode) -> None:
    """Every operation, each from its own strategy so that none goes untried however many
    there are (schemathesis's pytest plugin, ``from_fixture``, does not run under pytest 9)."""
    operations: set[str] = set()
    tried: set[str] = set()

    for result in described.get_all_operations():
        operation = result.ok()
        tried.add(f"{operation.method.upper()} {operation.path}")

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def keeps_to_it(case: Any) -> None:
            # A query parameter whose value is null or a list of nothing (``[]``, ``[[]]``)
            # is not sent at all: the server cannot refuse what it never sees.
            assume(not any(map(sends_nothing, (case.query or {}).values())))
            operations.add(f"{case.method} {case.path}")
            case.call_and_validate(headers=HEADERS)

        try:
            keeps_to_it()
        except Unsatisfiable:  # nothing about this operation can be made invalid
            assert mode is GenerationMode.NEGATIVE, operation.path
    assert {"POST /v1/endpoints", "PATCH /v1/endpoints/{id}", "GET /v1/dead",
            "POST /v1/vendors/{vendor}/keys"} <= operations  # fmt: skip
    untried = tried - operations
    assert mode is GenerationMode.NEGATIVE or not untried, untried


def test_the_admin_api_keeps_to_its_description_across_calls(
    described: Any, admin_url: str
) -> None:
    """The stateful phase: sequences of calls linked by the ids the answers give; some
    must reach an endpoint that exists (only a followed link can: ids are random).

    Valid requests only, each scenario from one endpoint: negative data is the fuzzing
    phase's (above), and schemathesis draws it here, and what a listing links to, in
    ways that differ from one scenario to the next, which Hypothesis reports as flaky
    data generation (2 of 8 runs of this test alone failed so).
    """
    described.config.phases.stateful.generation.update(modes=[GenerationMode.POSITIVE])
    operation = next(iter(described.get_all_operations())).ok()
    modes = described.config.generation_for(operation=operation, phase="stateful").modes
    assert modes == [GenerationMode.POSITIVE]
    machine = described.as_state_machine()
    linked: list[tuple[str, int]] = []

    class Calls(machine):  # type: ignore[misc, valid-type]
        def setup(self) -> None:
            # Every scenario starts with one endpoint: what a listing links to must not
            # depend on the scenarios before, as Hypothesis checks that each draws alike.
            with httpx.Client(base_url=admin_url, headers=HEADERS) as client:
                for endpoint in client.get("/v1/endpoints").raise_for_status().json():
                    client.delete(f"/v1/endpoints/{endpoint['id']}").raise_for_status()
                seed = {"vendor": "v_seed", "url": "https://seed.example/hooks"}
                client.post("/v1/endpoints", json=seed).raise_for_status()

        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            return {"headers": HEADERS}

        def validate_response(self, response: Any, case: Any, *args: Any, **kwargs: Any) -> None:
            case.validate_response(response, headers=HEADERS)

        def after_call(self, response: Any, case: Any) -> None:
            if case.path.startswith("/v1/endpoints/{id}"):
                linked.append((case.method, response.status_code))

    Calls.TestCase.settings = settings(
        max_examples=40, stateful_step_count=8, deadline=None, database=None,
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    Calls.run()
    assert any(status < 300 for _, status in linked), linked
