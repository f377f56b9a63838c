"""Who an admin API request speaks for, and whether they may use what its path names.

The edge of ``principals``: the bearer token is the admin token (the operator) or a
portal token this admin token issued (a vendor); for a vendor, the owner of the
endpoint, event, dead letter or vendor the path names is looked up (``owners``) and
``principals.admit`` decides. The operator's requests cost no look-up.
"""

from __future__ import annotations

import hmac
import re

import structlog

from httpserve import Request
from webhookd.clock import EpochClock
from webhookd.owners import dead_letter_owner, endpoint_owner, event_owner
from webhookd.portal_tokens import InvalidPortalToken, is_portal_token, verify
from webhookd.principals import OPERATOR, Principal, Scope, admit
from webhookd.registry import Registry
from webhookd.store import Store

log = structlog.get_logger("webhookd.admin")
_WHAT = {Scope.ENDPOINT: "endpoint", Scope.EVENT: "event", Scope.DEAD: "dead letter",
         Scope.VENDOR: "vendor"}  # fmt: skip


class Access:
    def __init__(
        self, *, token: str | None, registry: Registry, store: Store, clock: EpochClock
    ) -> None:
        self._token = token or ""
        self._registry = registry
        self._store = store
        self._clock = clock

    def principal(self, request: Request) -> Principal | None:
        """The operator for the admin token, a vendor for a valid portal token, else None
        (also for every request when no admin token is configured)."""
        if not self._token:
            return None
        scheme, _, offered = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        offered = offered.strip()
        if is_portal_token(offered):
            try:
                claims = verify(offered, admin_token=self._token, now_s=self._clock.now_s())
            except InvalidPortalToken as exc:
                log.info("admin.portal_token_refused", reason=str(exc))
                return None
            return Principal(claims.vendor)
        if hmac.compare_digest(offered.encode("utf-8", "replace"), self._token.encode()):
            return OPERATOR
        return None

    async def admit(self, principal: Principal, scope: Scope, match: re.Match[str]) -> None:
        """``principals.Refusal`` unless ``principal`` may use what the path names."""
        if principal.is_operator or scope in (Scope.OWN, Scope.OPERATOR):
            admit(principal, scope, None)
            return
        names = match.groupdict()
        owner: str | None = None
        if scope is Scope.ENDPOINT:
            owner = await endpoint_owner(self._registry, names["id"])
        elif scope is Scope.EVENT:
            owner = await event_owner(self._store, self._registry, names["id"])
        elif scope is Scope.DEAD:
            owner = await dead_letter_owner(self._store, names["id"])
        elif scope is Scope.VENDOR:
            owner = names["vendor"]
        admit(principal, scope, owner, f"{_WHAT[scope]} {next(iter(names.values()), '')}")
