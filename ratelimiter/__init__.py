"""ratelimiter: sliding-window rate limits per key, plan and route.

``Limiter`` (synchronous: memory or redis-py) and ``AsyncLimiter`` (trio or asyncio:
memory or coredis) check every limit of a hit in one atomic step and answer with a
``Decision`` that renders its own header fields and 429 body. ``VendorPlans`` and
``AsyncVendorPlans`` hold each vendor's plan, the record the service and webhookd share.
"""

from ratelimiter.async_limiter import AsyncLimiter, AsyncMemoryBackend
from ratelimiter.async_redis import AsyncRedisBackend
from ratelimiter.decision import Decision
from ratelimiter.errors import (
    BackendError,
    ConfigError,
    InvalidLimit,
    InvalidRequest,
    RateLimiterError,
    UnknownApiKey,
    UnknownPlan,
)
from ratelimiter.limit import Limit, parse_limit
from ratelimiter.limiter import Limiter
from ratelimiter.memory import MemoryBackend
from ratelimiter.policy import Plan, Policy, default_plans_path, load_policy
from ratelimiter.sync_redis import RedisBackend
from ratelimiter.vendors import AsyncVendorPlans, LimitUsage, VendorPlans, quota_key

__all__ = [
    "AsyncLimiter",
    "AsyncMemoryBackend",
    "AsyncRedisBackend",
    "AsyncVendorPlans",
    "BackendError",
    "ConfigError",
    "Decision",
    "InvalidLimit",
    "InvalidRequest",
    "Limit",
    "LimitUsage",
    "Limiter",
    "MemoryBackend",
    "Plan",
    "Policy",
    "RateLimiterError",
    "RedisBackend",
    "UnknownApiKey",
    "UnknownPlan",
    "VendorPlans",
    "default_plans_path",
    "load_policy",
    "parse_limit",
    "quota_key",
]
