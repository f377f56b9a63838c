"""TLS client contexts for endpoints that bring their own CA or client certificate (mTLS).

Most endpoints share the transport's one context (the system's CAs, certificates and
host names verified). An endpoint with a custom CA trusts that CA *instead of* the
system's; one with a client certificate presents it. Building a context costs a
millisecond or more, so contexts are built once per endpoint and kept while its TLS
settings stay the same.

Python's ``ssl`` loads a certificate chain only from a path, so the chain and its key
go through an anonymous in-memory file (``memfd``) where the system has one, else a
0600 temporary file removed at once.
"""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

from webhookd.endpoints import Endpoint, EndpointTls
from webhookd.errors import EndpointError


def endpoint_context(tls: EndpointTls) -> ssl.SSLContext:
    """A verifying client context for these settings; EndpointError if they do not load.

    PEM is ASCII: anything else is refused here, before ``ssl`` raises a TypeError on it.
    """
    for name in ("ca_cert", "client_cert", "client_key"):
        value = getattr(tls, name)
        if value is not None and not value.isascii():
            raise EndpointError(f"tls: {name} is not PEM (it holds non-ASCII characters)")
    try:
        context = (
            ssl.create_default_context(cadata=tls.ca_cert)
            if tls.ca_cert
            else (ssl.create_default_context())
        )
    except (ssl.SSLError, ValueError):
        raise EndpointError("tls: ca_cert is not a PEM certificate") from None
    if tls.client_cert and tls.client_key:
        with _pem_file(tls.client_cert + "\n" + tls.client_key) as path:
            try:
                context.load_cert_chain(path)
            except (ssl.SSLError, ValueError):
                raise EndpointError(
                    "tls: client_cert and client_key do not load as a PEM certificate chain "
                    "and its unencrypted private key"
                ) from None
    return context


@contextmanager
def _pem_file(text: str) -> Iterator[str]:
    """A path holding ``text`` for as long as the block runs, readable by this user only."""
    data = text.encode()
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("webhookd-tls", os.MFD_CLOEXEC)
        try:
            os.write(fd, data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    fd, path = tempfile.mkstemp(prefix="webhookd-tls-")
    try:
        os.write(fd, data)
        os.close(fd)
        yield path
    finally:
        os.unlink(path)


class TlsContexts:
    """Per-endpoint contexts, rebuilt only when an endpoint's TLS settings change."""

    def __init__(self) -> None:
        self._built: dict[str, tuple[EndpointTls, ssl.SSLContext]] = {}

    def context_for(self, endpoint: Endpoint) -> ssl.SSLContext | None:
        """The endpoint's own context; None means the transport's shared one."""
        if endpoint.tls is None:
            self._built.pop(endpoint.id, None)
            return None
        built = self._built.get(endpoint.id)
        if built is not None and built[0] == endpoint.tls:
            return built[1]
        context = endpoint_context(endpoint.tls)
        self._built[endpoint.id] = (endpoint.tls, context)
        return context
