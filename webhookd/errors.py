"""The exception tree of webhookd.

WebhookdError
├── ConfigError          bad or unknown configuration (the CLI exits 2)
├── InvalidEventError    a malformed stream entry (dead-lettered with a reason, never raised out)
├── EndpointError        an endpoint that cannot be registered (bad URL, unknown id)
│   └── EndpointNotFound
├── SecretsError         sealed secrets that this process cannot open (wrong master key)
├── StoreError           a Redis call failed (translated in one place: webhookd.store)
│   ├── StoreUnavailable   Redis unreachable, loading, failing over: retry with backoff
│   ├── GroupMissing       the stream or its consumer group is gone (NOGROUP): recreate it
│   └── StoreRefused       Redis rejected the call itself: retrying the same call won't help
└── TransportError       an HTTP attempt that failed before a complete response
    ├── ConnectError
    │   └── TargetRefused  the target resolves to an address deliveries may not reach
    ├── TimeoutError_    (named so it does not shadow the builtin)
    └── ProtocolError    the peer spoke broken HTTP
"""

from __future__ import annotations


class WebhookdError(Exception):
    """Root of every error webhookd raises on purpose."""


class ConfigError(WebhookdError):
    """Configuration that cannot be used; the message names the key."""


class InvalidEventError(WebhookdError):
    """A stream entry that is not a valid event; the message is the dead-letter reason."""


class EndpointError(WebhookdError):
    """An endpoint that cannot be registered or changed."""


class EndpointNotFound(EndpointError):
    """No endpoint has that id."""


class SecretsError(WebhookdError):
    """Secrets at rest that cannot be opened; the message names key ids, never key material."""


class StoreError(WebhookdError):
    """A Redis call that failed; the message says which call and why."""


class StoreUnavailable(StoreError):
    """Redis cannot answer now (connection lost, loading, failing over): worth retrying."""


class GroupMissing(StoreError):
    """The stream or its consumer group no longer exists (Redis came back empty)."""


class StoreRefused(StoreError):
    """Redis refused the call (a script error, a wrong type, a malformed argument)."""


class TransportError(WebhookdError):
    """An attempt that got no complete HTTP response."""


class ConnectError(TransportError):
    """The connection (TCP or TLS) could not be made."""


class TargetRefused(ConnectError):
    """The egress policy refused the target (a private address, plain HTTP) before connecting."""


class TimeoutError_(TransportError):
    """The attempt did not finish within the delivery timeout."""


class ProtocolError(TransportError):
    """The receiver answered with something that is not valid HTTP/1.1."""
