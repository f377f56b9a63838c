"""The Python client of the limiter service, over httpx (not a hot path: see DESIGN.md).

``ServiceClient("http://127.0.0.1:8081").check("vendor:v_1", "50/m", plan="basic")``
returns the decision as the service renders it (``allowed``, ``limit``, ``remaining``,
``reset``, ``retry_after``, ``policy``). A request the service finds bad raises
``InvalidRequest`` with its message; an unreachable service, a 503 (Redis down with
``failure_mode = "closed"``) or any other answer raises ``BackendError``.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from ratelimiter.errors import BackendError, InvalidRequest


class ServiceClient:
    def __init__(
        self,
        base_url: str,
        *,
        timeout_s: float = 1.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(base_url=base_url, timeout=timeout_s, transport=transport)

    def check(
        self,
        key: str,
        *limits: str,
        plan: str | None = None,
        route: str | None = None,
        cost: int = 1,
    ) -> dict[str, Any]:
        """Count ``cost`` against the key's limits; the decision, allowed or not."""
        body: dict[str, Any] = {"key": key, "cost": cost}
        if limits:
            body["limits"] = list(limits)
        if plan is not None:
            body["plan"] = plan
        if route is not None:
            body["route"] = route
        try:
            response = self._http.post("/v1/check", json=body)
        except httpx.HTTPError as error:
            raise BackendError(f"the rate limiter service failed: {error}") from error
        if response.status_code == 400:
            raise InvalidRequest(_message(response))
        if response.status_code != 200:
            raise BackendError(f"the rate limiter service answered {response.status_code}: "
                               f"{_message(response)}")  # fmt: skip
        decision: dict[str, Any] = response.json()
        return decision

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ServiceClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
