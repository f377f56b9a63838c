"""The vendor portal's files, served at ``/portal/`` by the admin listener.

Static HTML, CSS and JavaScript shipped in the package (``webhookd/portal/``), read
once at start; no build step, no third-party code, nothing fetched from elsewhere.
The page calls the admin API with a bearer token it keeps in ``sessionStorage``, so a
browser sends nothing by itself (no cookies: nothing to forge across sites). Every
answer carries a strict Content-Security-Policy (no inline script, nothing from other
origins, no framing) and no-referrer, nosniff and DENY framing headers.
"""

from __future__ import annotations

from importlib import resources

from httpserve import Response

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-security-policy",
     "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("x-frame-options", "DENY"),
    ("cache-control", "no-cache"),
)  # fmt: skip
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}


class PortalAssets:
    """The portal's files by URL path, with their content types."""

    def __init__(self) -> None:
        folder = resources.files("webhookd") / "portal"
        self._files: dict[str, tuple[bytes, str]] = {}
        for item in folder.iterdir():
            suffix = "." + item.name.rpartition(".")[2]
            if item.is_file() and suffix in _TYPES:
                self._files[f"/portal/{item.name}"] = (item.read_bytes(), _TYPES[suffix])
        self._files["/portal/"] = self._files["/portal/index.html"]

    def answer(self, method: str, path: str) -> Response:
        if path == "/portal":
            return Response(308, headers=(("location", "/portal/"), *SECURITY_HEADERS))
        found = self._files.get(path)
        if found is None:
            return Response.error(404, "not_found", f"no portal file {path}", SECURITY_HEADERS)
        if method not in ("GET", "HEAD"):
            return Response.error(405, "method_not_allowed", "use GET", (("allow", "GET"),))
        body, content_type = found
        return Response(200, body, SECURITY_HEADERS, content_type=content_type)
