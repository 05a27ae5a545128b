"""Who may use the device's HTTP server: loopback binds are private; anything else needs a token from the environment.

Kept apart from `http.py` so the config models can check a bind without importing the server.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
from typing import Any
from urllib.parse import parse_qs

TOKEN_ENV = "EDGECAM_HTTP_TOKEN"  # the default variable; `http.token_env` names another
MIN_TOKEN = 16  # characters: a guessable token on an exposed port is no protection
COOKIE = "edgecam_session"
_SECRET_IN_URL = re.compile(r"(token=)[^&\s]*", re.IGNORECASE)


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 or `localhost`: reachable from this device only. A host name is taken as exposed."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def redact(text: str) -> str:
    """A request line or URL with any `token=` value blanked, for logs."""
    return _SECRET_IN_URL.sub(r"\1***", text)


class Guard:
    """Checks a request's credentials against one token; `Guard(None)` lets everything through."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token else None
        # The browser's cookie is derived from the token, so the token itself is never stored in a browser.
        self.cookie = hmac.new(self._token, b"edgecam live view", hashlib.sha256).hexdigest() if self._token else None

    @property
    def enabled(self) -> bool:
        return self._token is not None

    def allows(self, headers: Any, query: str) -> bool:
        """A bearer header, a `token` query value or the session cookie (constant-time compares)."""
        if self._token is None:
            return True
        auth = headers.get("Authorization", "")
        if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(), self._token):
            return True
        if any(hmac.compare_digest(t.encode(), self._token) for t in parse_qs(query).get("token", [])):
            return True
        assert self.cookie is not None
        return any(hmac.compare_digest(c.encode(), self.cookie.encode()) for c in _cookies(headers, COOKIE))


def _cookies(headers: Any, name: str) -> list[str]:
    values = []
    for header in headers.get_all("Cookie") or []:
        for part in header.split(";"):
            key, _, value = part.strip().partition("=")
            if key == name:
                values.append(value)
    return values
