"""``Service.handle``, what the HTTP server calls: each route's request parsed
(``requests.py``), decided (``decisions.py``), answered (``answers.py``) and counted
(``metrics.py``).

Routes: ``POST /v1/check``; ``/v1/auth`` and anything under it (forward auth: Envoy
sends the original path after the prefix), any method; ``GET|HEAD /metrics``,
``/healthz`` and ``/openapi.json``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import prometheus_client

from httpserve import Request, Response
from ratelimiter.async_limiter import AsyncLimiter
from ratelimiter.async_redis import AsyncRedisClient
from ratelimiter.config import ServiceSettings
from ratelimiter.keys import KeyStore
from ratelimiter.openapi import openapi_document
from ratelimiter.service import answers
from ratelimiter.service.decisions import Decisions
from ratelimiter.service.metrics import Outcomes, StoreWatch
from ratelimiter.service.requests import BadRequest, Hit, RequestRules, Unauthorized, json_body

_OPERATIONAL = ("/metrics", "/healthz", "/openapi.json")


class Service:
    """The request handler of one service process; ``clock`` times failure answers."""

    def __init__(
        self,
        settings: ServiceSettings,
        limiter: AsyncLimiter,
        *,
        keys: KeyStore | None = None,
        redis: AsyncRedisClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._settings = settings
        self._policy = limiter.policy
        self._clock = clock
        self.rules = RequestRules(limiter.policy.plans, settings.default_plan,
                                  settings.trust_key_header)  # fmt: skip
        watch = StoreWatch(settings.failure_mode)
        self._decisions = Decisions(
            limiter, self.rules, watch, timeout_s=settings.redis_timeout_s, keys=keys, redis=redis
        )
        self._store = "memory" if redis is None else "redis"
        self._outcomes = Outcomes()
        document = openapi_document(sorted(limiter.policy.plans), deny_status=settings.deny_status,
                                    trust_key_header=settings.trust_key_header)  # fmt: skip
        self._openapi = Response.json(200, document)

    async def handle(self, request: Request) -> Response:
        path = request.path
        try:
            if path == "/v1/auth" or path.startswith("/v1/auth/"):
                return await self._auth(request)
            if path == "/v1/check":
                if request.method != "POST":
                    return answers.method_not_allowed("POST")
                return await self._check(request)
        except BadRequest as bad:
            return answers.bad_request(bad)
        except Unauthorized as refused:
            self._outcomes.count("unauthorized", None)
            return answers.unauthorized(refused)
        if path in _OPERATIONAL and request.method not in ("GET", "HEAD"):
            return answers.method_not_allowed("GET")
        if path == "/metrics":
            return Response(200, prometheus_client.generate_latest(),
                            content_type=prometheus_client.CONTENT_TYPE_LATEST)  # fmt: skip
        if path == "/healthz":
            available = await self._decisions.store_answers()
            return answers.health(self._store, available=available,
                                  failure_mode=self._settings.failure_mode)  # fmt: skip
        if path == "/openapi.json":
            return self._openapi
        return answers.not_found(path)

    async def _check(self, request: Request) -> Response:
        started = time.perf_counter()
        hit = self.rules.check_hit(json_body(request))
        decision = await self._decisions.decide(hit)
        if decision is None:
            response = self._failed(hit, body=True)
        else:
            self._outcomes.count("allowed" if decision.allowed else "refused", hit.plan)
            response = answers.allowed(decision)
        self._outcomes.latency["check"].observe(time.perf_counter() - started)
        return response

    async def _auth(self, request: Request) -> Response:
        started = time.perf_counter()
        hit, api_key = self.rules.auth_hit(request)
        if api_key is None:
            decision = await self._decisions.decide(hit)
        else:
            hit, decision = await self._decisions.decide_for_key(hit, api_key)
        if decision is None:
            response = self._failed(hit, body=False)
        elif decision.allowed:
            self._outcomes.count("allowed", hit.plan)
            response = answers.allowed(decision)
        else:
            self._outcomes.count("refused", hit.plan)
            response = answers.refused(decision, self._settings.deny_status)
        self._outcomes.latency["auth"].observe(time.perf_counter() - started)
        return response

    def _failed(self, hit: Hit, *, body: bool) -> Response:
        mode = self._settings.failure_mode
        self._outcomes.count("failed_open" if mode == "open" else "failed_closed", hit.plan)
        limits = self._policy.limits_for(hit.limits, hit.plan, hit.route)
        return answers.failed(limits, mode, round(self._clock() * 1000), body=body)
