"""The web page's session cookie: proof that the browser entered a valid API key, without storing the key.

The cookie is ``<expiry>.<HMAC-SHA256 of the expiry, keyed with the API key>``. Any API process with the same keys
checks it (no server-side state); removing a key from ``IFCFLOW_API_KEYS`` ends the sessions made with it.
"""

from __future__ import annotations

import hashlib
import hmac
import time

COOKIE = "ifcflow_session"
LIFETIME = 12 * 3600
"""A session lasts 12 hours."""


def _signature(key: str, expires: int) -> str:
    return hmac.new(key.encode(), f"ifcflow-ui-session:{expires}".encode(), hashlib.sha256).hexdigest()


def issue(key: str, now: float | None = None, lifetime: int = LIFETIME) -> str:
    """A cookie value for a browser that entered ``key`` (which the caller has checked)."""
    expires = int((time.time() if now is None else now) + lifetime)
    return f"{expires}.{_signature(key, expires)}"


def valid(cookie: str | None, keys: tuple[str, ...], now: float | None = None) -> bool:
    """Whether ``cookie`` was issued for one of ``keys`` and has not expired (constant time over the keys)."""
    if not cookie or not keys:
        return False
    stamp, sep, signature = cookie.partition(".")
    if not sep or not (stamp.isascii() and stamp.isdigit()) or len(stamp) > 12 or len(signature) > 128:
        return False  # (str.isdigit accepts "²"; int() refuses 5,000 digits: both are just not a session)
    expires = int(stamp)
    if expires < (time.time() if now is None else now):
        return False
    found = False
    for key in keys:
        found |= hmac.compare_digest(signature.encode(), _signature(key, expires).encode())
    return found
