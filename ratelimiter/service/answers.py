"""Answers as values: a decision, a refusal, a failure of the store, a bad or
unauthorised request, each rendered as the ``Response`` the contract gives it.

Pure: the failure answer takes the time it is given. When no decision could be taken
(Redis failed or did not answer in time), ``failure_mode`` decides: ``open`` allows the
request, ``closed`` answers 503; both say so in ``X-RateLimit-Failure-Mode`` and carry
the header fields of the limits the hit was checked against, as if every one were full
(open) or empty (closed).
"""

from __future__ import annotations

from httpserve import Response
from ratelimiter.decision import Decision, decide
from ratelimiter.limit import Limit
from ratelimiter.service.requests import BadRequest, Unauthorized

FAILURE_HEADER = "X-RateLimit-Failure-Mode"
Headers = tuple[tuple[str, str], ...]


def decision_headers(decision: Decision) -> Headers:
    return decision.header_fields()


def allowed(decision: Decision) -> Response:
    """200 with the decision as JSON: every ``/v1/check`` answer, and ``/v1/auth``'s allowed."""
    return Response.json(200, decision.as_dict(), decision_headers(decision))


def refused(decision: Decision, deny_status: int) -> Response:
    """A refusal on ``/v1/auth``: ``deny_status`` with the 429 body."""
    return Response.json(deny_status, decision.error_body(), decision_headers(decision))


def failed(limits: tuple[Limit, ...], failure_mode: str, now_ms: int, *, body: bool) -> Response:
    """The answer when the store failed; ``body`` adds ``"failure_mode"`` to an allowed
    ``/v1/check`` answer (``/v1/auth``'s body is only ever read by gateways' logs)."""
    allow = failure_mode == "open"
    states = [(limit.amount if allow else 0, now_ms, 0 if allow else 1000) for limit in limits]
    decision = decide(limits, states, allow, now_ms)
    headers = (*decision_headers(decision), (FAILURE_HEADER, failure_mode))
    if not allow:
        message = "the rate limiter's store is unavailable; failure_mode is closed"
        return Response.error(503, "unavailable", message, headers)
    answer = {**decision.as_dict(), "failure_mode": "open"} if body else decision.as_dict()
    return Response.json(200, answer, headers)


def bad_request(error: BadRequest) -> Response:
    body = {"error": "invalid_request", "field": error.field, "message": str(error)}
    return Response.json(400, body)


def unauthorized(error: Unauthorized) -> Response:
    """401 with the RFC 6750 challenge; ``invalid_token`` when a credential was sent."""
    challenge = 'Bearer realm="ratelimiter"'
    if error.invalid:
        challenge += ', error="invalid_token"'
    code = "invalid_api_key" if error.invalid else "missing_api_key"
    return Response.error(401, code, str(error), (("www-authenticate", challenge),))


def method_not_allowed(method: str) -> Response:
    return Response.error(405, "method_not_allowed", f"use {method}", (("allow", method),))


def not_found(path: str) -> Response:
    return Response.error(404, "not_found", f"no route for {path}")


def health(store: str, *, available: bool, failure_mode: str) -> Response:
    """``/healthz``: 200 while the store answers; when it does not, 200 (``open``) or 503."""
    if available:
        return Response.json(200, {"status": "ok", "store": store})
    status = 200 if failure_mode == "open" else 503
    return Response.json(status, {"status": "degraded", "store": f"{store} unavailable",
                                  "failure_mode": failure_mode})  # fmt: skip
