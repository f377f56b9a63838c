"""The limiter service: ``POST /v1/check``, ``GET /v1/auth`` and the operational routes.

A request becomes a hit (key, plan, route, ad-hoc limits, cost), the hit a decision of
the ``AsyncLimiter``, the decision an answer carrying its header fields. The modules:

- ``requests.py`` (pure): a ``/v1/check`` body or ``/v1/auth`` headers into a ``Hit``,
  or ``BadRequest`` / ``Unauthorized``;
- ``answers.py`` (pure): a decision, a refusal, a store failure (``failure_mode``), a
  bad or unauthorised request, each as its ``Response``;
- ``decisions.py``: the limiter and the API-key store, within ``service.redis_timeout``;
- ``routes.py``: ``Service.handle``, the routes; ``metrics.py``: Prometheus and the
  store's up/down log lines; ``wiring.py``: ``open_service`` and ``run``.

``/v1/auth`` takes the credential from an ``mk_live_`` bearer token: an API key, looked
up, counted under its vendor against the vendor's plan, and against the key's own plan
too when it has one. Only with ``service.trust_key_header`` (raw-key mode, for a gateway
that sets the header itself) does a request without an API key count under its
``X-RateLimit-Key``. Anything else, a made-up token included, answers 401 with a
``WWW-Authenticate`` challenge: no credential gets a quota of its own by being
presented. Keys named by callers are counted under ``raw:<key>``, a namespace no API
key or vendor quota lives in.
"""

from ratelimiter.service.answers import FAILURE_HEADER
from ratelimiter.service.requests import (
    RAW_NAMESPACE,
    BadRequest,
    Hit,
    RequestRules,
    Unauthorized,
)
from ratelimiter.service.routes import Service
from ratelimiter.service.wiring import SERVER_LIMITS, open_service, run

__all__ = [
    "FAILURE_HEADER",
    "RAW_NAMESPACE",
    "SERVER_LIMITS",
    "BadRequest",
    "Hit",
    "RequestRules",
    "Service",
    "Unauthorized",
    "open_service",
    "run",
]
