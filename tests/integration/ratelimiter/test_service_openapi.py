"""The service keeps to its OpenAPI description: schemathesis, every check, on a real process.

schemathesis reads ``/openapi.json`` from a running ``ratelimiter serve`` and sends
requests generated from it, valid ones and ones that break it, to every operation;
each answer must conform (status, headers, body), valid requests must not be refused
as bad, invalid ones must be, and nothing may answer 5xx. Requests carry a real API
key; the ``ignored_auth`` check also tries them without it and with a made-up one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode

from processes import serving
from ratelimiter.embedded import free_port

RATELIMITER = str(Path(sys.executable).with_name("ratelimiter"))


@pytest.fixture(scope="module", params=[False, True], ids=["api keys", "raw-key mode"])
def service(
    redis_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[dict[str, str]]:
    """``ratelimiter serve`` on a free port, and an API key of a vendor on the growth plan;
    in raw-key mode too, where the description has X-RateLimit-Key and X-RateLimit-Plan."""
    directory = tmp_path_factory.mktemp("openapi")
    port = free_port()
    config = directory / "ratelimiter.toml"
    trust = "true" if request.param else "false"
    config.write_text(
        f'[redis]\nurl = "{redis_url}"\nkey_prefix = "t{uuid.uuid4().hex[:12]}"\n'
        f'[service]\nlisten = "127.0.0.1:{port}"\ntrust_key_header = {trust}\n'
        '[routes]\n"GET /api/v2/orders" = "5/m"\n[log]\nlevel = "error"\n'
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("RATELIMITER_")}

    def command(*args: str) -> str:
        return subprocess.run([RATELIMITER, *args, "--config", str(config)], env=environ,
                              check=True, capture_output=True, text=True).stdout  # fmt: skip

    command("vendor", "set-plan", "v_1", "growth")
    key = command("key", "create", "--vendor", "v_1").strip()
    url = f"http://127.0.0.1:{port}"
    with serving([RATELIMITER, "serve", "--config", str(config)], url, environ):
        yield {"url": url, "key": key}


@pytest.fixture(scope="module")
def described(service: dict[str, str]) -> Any:
    return schemathesis.openapi.from_url(f"{service['url']}/openapi.json")


@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_the_service_keeps_to_its_description(
    described: Any, service: dict[str, str], mode: GenerationMode
) -> None:
    """Every operation, from the document's whole-schema strategy (schemathesis's pytest
    plugin, ``from_fixture``, does not run under pytest 9)."""
    headers = {"Authorization": f"Bearer {service['key']}"}
    operations: set[str] = set()

    @given(case=described.as_strategy(generation_mode=mode))
    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    def keeps_to_it(case: Any) -> None:
        operations.add(f"{case.method} {case.path}")
        case.call_and_validate(headers=headers)

    keeps_to_it()
    assert {"POST /v1/check", "GET /v1/auth"} <= operations  # no invalid /healthz request
