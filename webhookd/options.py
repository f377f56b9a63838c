"""An endpoint's own delivery options (retry schedule, attempt timeout, concurrency,
extra static headers), each defaulting to the global setting, and their validation.

Pure. Extra headers are refused where they could change how a request is framed or
forwarded (hop-by-hop and framing headers) or pass for what webhookd itself vouches
for (the signatures, the event's identity, the body's type, ``webhook-*``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from webhookd.errors import EndpointError

HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}")  # an RFC 9110 token
HEADER_VALUE = re.compile(r"[\x20-\x7e\t]{0,1024}")  # visible ASCII, spaces and tabs: no CR/LF
MAX_HEADERS = 20
# Headers an endpoint may not set: hop-by-hop and framing ones, and every header that
# the delivery contract defines (the signatures, the event's identity, the body's type).
RESERVED_HEADERS = frozenset({
    "connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer",
    "upgrade", "proxy-authenticate", "proxy-authorization", "host", "content-length",
    "content-type", "content-encoding", "expect", "user-agent", "x-signature",
    "x-timestamp", "x-event-type", "x-event-id",
})  # fmt: skip
RESERVED_PREFIXES = ("webhook-",)
MAX_SCHEDULE = 50
MAX_DELAY_S = 7 * 86400.0
MAX_TIMEOUT_S = 300.0
MAX_CONCURRENCY = 1024
OPTION_NAMES = ("retry_schedule", "timeout", "concurrency", "headers")  # as the admin API has them


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """An endpoint's own delivery settings; None (or no headers) takes the global one."""

    retry_schedule: tuple[float, ...] | None = None
    timeout_s: float | None = None
    concurrency: int | None = None
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # sealed at rest

    def shown(self) -> dict[str, Any]:
        return {
            "retry_schedule": None if self.retry_schedule is None else list(self.retry_schedule),
            "timeout": self.timeout_s,
            "concurrency": self.concurrency,
        }


NO_OPTIONS = DeliveryOptions()


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError
    return float(value)


def retry_schedule(value: Any) -> tuple[float, ...] | None:
    """A retry schedule: seconds before each retry, ``1,2,4`` or a list; None is the default."""
    if value is None:
        return None
    try:
        items = value.split(",") if isinstance(value, str) else list(value)
        delays = tuple(float(i) if isinstance(i, str) else _number(i) for i in items)
    except (TypeError, ValueError):
        raise EndpointError("retry_schedule: give seconds before each retry, e.g. 1,2,4") from None
    if len(delays) > MAX_SCHEDULE or not all(0 < d <= MAX_DELAY_S for d in delays):
        raise EndpointError(
            f"retry_schedule: at most {MAX_SCHEDULE} delays, each above 0 and at most "
            f"{MAX_DELAY_S:g} s"
        )
    return delays


def attempt_timeout(value: Any) -> float | None:
    if value is None:
        return None
    try:
        timeout = _number(value)
    except ValueError:
        timeout = -1.0
    if not 0 < timeout <= MAX_TIMEOUT_S:
        raise EndpointError(f"timeout: seconds above 0 and at most {MAX_TIMEOUT_S:g}")
    return timeout


def concurrency(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():  # JSON Schema's integers include 2.0
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONCURRENCY:
        raise EndpointError(f"concurrency: a whole number from 1 to {MAX_CONCURRENCY}")
    return value


def static_headers(value: Any) -> tuple[tuple[str, str], ...]:
    """Extra headers sent with every delivery: ``{"Name": "value"}``, ``"Name: value"``
    lines, or (name, value) pairs. Refused: what is not a token name or a one-line
    visible-ASCII value, reserved headers (``RESERVED_HEADERS``, ``webhook-*``). A name
    given twice (in two spellings of case) is sent twice, as HTTP allows."""
    if value is None:
        return ()
    if isinstance(value, Mapping):
        pairs = list(value.items())
    elif isinstance(value, list | tuple):
        pairs = [_header_line(item) for item in value]
    else:
        raise EndpointError('headers: an object such as {"X-Team": "orders"}')
    if len(pairs) > MAX_HEADERS:
        raise EndpointError(f"headers: at most {MAX_HEADERS}")
    checked = []
    for name, text in pairs:
        if not isinstance(name, str) or not HEADER_NAME.fullmatch(name):
            raise EndpointError(f"headers: {name!r} is not a header name (an HTTP token)")
        lower = name.lower()
        if lower in RESERVED_HEADERS or lower.startswith(RESERVED_PREFIXES):
            raise EndpointError(f"headers: {name} is set by webhookd and cannot be replaced")
        if not isinstance(text, str) or not HEADER_VALUE.fullmatch(text):
            raise EndpointError(
                f"headers: the value of {name} must be one line of visible ASCII "
                "(no CR, LF or control characters), at most 1024 characters"
            )
        checked.append((name, text.strip(" \t")))
    return tuple(checked)


def _header_line(item: Any) -> tuple[Any, Any]:
    if isinstance(item, str):
        name, colon, text = item.partition(":")
        if not colon:
            raise EndpointError(f"headers: {item!r} is not 'Name: value'")
        return name.strip(), text.strip(" \t")
    if isinstance(item, list | tuple) and len(item) == 2:
        return item[0], item[1]
    raise EndpointError(f"headers: {item!r} is not 'Name: value'")


def delivery_options(changes: Mapping[str, Any], current: DeliveryOptions) -> DeliveryOptions:
    """``current`` with the settings in ``changes`` (admin API names) checked and applied;
    a null value goes back to the global default."""
    options = current
    if "retry_schedule" in changes:
        options = replace(options, retry_schedule=retry_schedule(changes["retry_schedule"]))
    if "timeout" in changes:
        options = replace(options, timeout_s=attempt_timeout(changes["timeout"]))
    if "concurrency" in changes:
        options = replace(options, concurrency=concurrency(changes["concurrency"]))
    if "headers" in changes:
        options = replace(options, headers=static_headers(changes["headers"]))
    return options
