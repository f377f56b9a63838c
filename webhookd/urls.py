"""Endpoint URLs: the one judgement of what webhookd can POST to, for registration and sending.

Registration (``webhookd.endpoints.validate_url``) and the transport both parse a URL
here, so a URL that registers is one the transport can send, and the form stored is the
form sent. What HTTP/1.1 cannot carry but a browser would fix is fixed the way browsers
fix it (an IRI becomes a URI): a non-ASCII host is IDNA-encoded, non-ASCII characters in
the path and query are percent-encoded as UTF-8. What cannot be fixed (another scheme,
credentials, a fragment, spaces, control characters, a malformed host or port) is refused
with the reason. An ASCII URL that passes comes back unchanged. Pure: no DNS, no policy
(https only, private targets: the caller's business).
"""

from __future__ import annotations

import ipaddress
import re
import string
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from webhookd.errors import EndpointError

__all__ = ["DEFAULT_PORTS", "EndpointUrl", "Origin"]

DEFAULT_PORTS = {"http": 80, "https": 443}
_HOSTNAME = re.compile(r"[a-z0-9_.-]+")
_ASCII_PRINTABLE = "".join(ch for ch in string.printable if not ch.isspace())


@dataclass(frozen=True, slots=True)
class Origin:
    """Where connections go; requests to one origin can share a keep-alive connection."""

    scheme: str  # "http" or "https"
    host: str  # lower case, IDNA-encoded, IPv6 without brackets
    port: int

    @classmethod
    def from_url(cls, url: str) -> Origin:
        """The origin of an endpoint URL; raises EndpointError for a URL we could not POST to."""
        try:
            return EndpointUrl.parse(url).origin
        except EndpointError as exc:
            raise EndpointError(f"bad endpoint URL {url!r}: {exc}") from None

    @property
    def authority(self) -> str:
        """The Host header value: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if DEFAULT_PORTS[self.scheme] == self.port else f"{host}:{self.port}"

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class EndpointUrl:
    """An endpoint URL as stored (ASCII only) and the origin and request target it means."""

    url: str
    origin: Origin
    target: str  # the request target: path (at least "/") and query, printable ASCII

    @classmethod
    def parse(cls, url: str) -> EndpointUrl:
        """The normalized URL and its parts; EndpointError ("url ...") for one we cannot send."""
        bad = next((ch for ch in url if ch.isspace() or not ch.isprintable()), None)
        if bad is not None:
            raise EndpointError(
                f"url must not contain spaces or control characters (found U+{ord(bad):04X})"
            )
        try:
            return cls._parse(url)
        except UnicodeError as exc:  # IDNA, or a character UTF-8 cannot encode
            raise EndpointError(f"url is not valid: {exc}") from None

    @classmethod
    def _parse(cls, url: str) -> EndpointUrl:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise EndpointError(f"url is not valid: {exc}") from None
        if parts.scheme not in DEFAULT_PORTS:
            raise EndpointError(
                f"url must start with https:// or http:// (got {parts.scheme or 'no'} scheme)"
            )
        if not parts.hostname:
            raise EndpointError("url has no host")
        if parts.username is not None or parts.password is not None:
            raise EndpointError("url must not carry credentials; use the signature to authenticate")
        if parts.fragment:
            raise EndpointError("url must not have a #fragment")
        if port == 0:
            raise EndpointError("url port must be 1-65535")
        host = _host(parts.hostname)
        netloc = parts.netloc
        if not netloc.isascii():
            netloc = host if port is None else f"{host}:{port}"
        # Neither spaces nor control characters are left, so the scheme and netloc are
        # exactly the start of the URL: only what follows them is percent-encoded.
        rest = url[len(parts.scheme) + 3 + len(parts.netloc) :]
        normalized = url if url.isascii() else f"{url[: len(parts.scheme) + 3]}{netloc}{_iri(rest)}"
        path = _iri(parts.path) or "/"
        target = f"{path}?{_iri(parts.query)}" if parts.query else path
        return cls(
            normalized, Origin(parts.scheme, host, port or DEFAULT_PORTS[parts.scheme]), target
        )


def _host(hostname: str) -> str:
    """The host as connections and the Host header use it: IPv6 checked, names IDNA-encoded."""
    if ":" in hostname:
        try:
            ipaddress.IPv6Address(hostname)
        except ValueError as exc:
            raise EndpointError(f"url host {hostname!r} is not valid: {exc}") from None
        return hostname
    host = hostname.encode("idna").decode("ascii")
    if not _HOSTNAME.fullmatch(host):
        raise EndpointError(f"url host {hostname!r} is not a valid host name")
    return host


def _iri(text: str) -> str:
    """Non-ASCII characters percent-encoded as UTF-8; ASCII (already printable) left alone."""
    return text if text.isascii() else quote(text, safe=_ASCII_PRINTABLE)
