"""Endpoint health: an endpoint whose every attempt has failed for ``health.disable_after``
is disabled, with the reason and its last error kept on it.

The run of failures is shared by every daemon and survives restarts (its start lives in
the registry, ``Registry.note_failing``); each daemon keeps a copy in its endpoint table,
so an attempt costs a Redis call only when it starts a run (the first failure) or ends
one (the first success after failures). 410 Gone is not counted here: it disables the
endpoint at once (``webhookd.pipeline``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import structlog

from webhookd.clock import EpochClock
from webhookd.errors import StoreError, WebhookdError
from webhookd.events import format_timestamp
from webhookd.metrics import ENDPOINTS_DISABLED
from webhookd.model import AttemptRecord
from webhookd.registry import EndpointTable, Registry
from webhookd.retry import Delivered, Gone, Outcome, describe

log = structlog.get_logger("webhookd.health")

T = TypeVar("T")


def overdue(since_s: float, now_s: float, disable_after_s: float) -> bool:
    """Whether a run of failures that started at ``since_s`` disables its endpoint now."""
    return disable_after_s > 0 and now_s - since_s >= disable_after_s


def failing_reason(since_s: float) -> str:
    return f"every attempt failed since {format_timestamp(since_s)}"


class EndpointHealth:
    def __init__(
        self, registry: Registry, table: EndpointTable, clock: EpochClock, disable_after_s: float
    ) -> None:
        self._registry = registry
        self._table = table
        self._clock = clock
        self._disable_after_s = disable_after_s

    async def observe(self, endpoint_id: str, record: AttemptRecord, outcome: Outcome) -> None:
        """Count one attempt's result; a Redis failure here is logged, never raised (the
        attempt's own outcome is recorded anyway)."""
        failing = self._table.failing
        if isinstance(outcome, Delivered):
            if endpoint_id in failing:
                del failing[endpoint_id]
                await self._quietly(self._registry.clear_failing(endpoint_id), endpoint_id)
            return
        if isinstance(outcome, Gone):
            return
        since_s = failing.get(endpoint_id)
        if since_s is None:
            noted = await self._quietly(
                self._registry.note_failing(endpoint_id, record.started_s), endpoint_id
            )
            if noted is None:
                return
            since_s = failing[endpoint_id] = noted
        if overdue(since_s, self._clock.now_s(), self._disable_after_s):
            await self._disable(endpoint_id, since_s, record)

    async def _disable(self, endpoint_id: str, since_s: float, record: AttemptRecord) -> None:
        result = record.result
        disabled = await self._quietly(
            self._registry.set_enabled(endpoint_id, False, failing_reason(since_s), by="failing",
                                       last_status=result.status, last_error=describe(result)),
            endpoint_id,
        )  # fmt: skip
        self._table.failing.pop(endpoint_id, None)
        if disabled is not None and not disabled.enabled:
            self._table.update(disabled)
            ENDPOINTS_DISABLED.labels("failing").inc()
            log.warning("endpoint.auto_disabled", endpoint_id=endpoint_id,
                        since=format_timestamp(since_s), last_status=result.status,
                        last_error=describe(result))  # fmt: skip

    async def _quietly(self, call: Awaitable[T], endpoint_id: str) -> T | None:
        try:
            return await call
        except (StoreError, WebhookdError) as exc:
            log.warning("endpoint.health_write_failed", endpoint_id=endpoint_id, error=str(exc))
            return None
