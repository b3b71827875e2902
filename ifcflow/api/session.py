"""The web page's session cookie: proof that the browser entered a valid API key, without storing the key.

The cookie is ``<expiry>.<HMAC-SHA256 keyed with the server's session secret over the expiry and a digest of the
API key>``. The secret is 32 random bytes made once and kept in Redis (``SET NX``), so every API process of a
deployment checks any of its cookies with no other shared state, and a stolen cookie gives nothing to guess the API
key with offline: without the secret the HMAC cannot be recomputed for a guessed key. Removing a key from
``IFCFLOW_API_KEYS`` ends the sessions made with it; deleting the secret from Redis (or flushing Redis) ends all.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from redis import Redis

COOKIE = "ifcflow_session"
LIFETIME = 12 * 3600
"""A session lasts 12 hours."""
SECRET_KEY = "ifcflow:api:session-secret"


def shared_secret(conn: Redis) -> bytes:
    """The deployment's session secret (made on first use; every API process on this Redis gets the same one)."""
    conn.set(SECRET_KEY, secrets.token_hex(32), nx=True)
    value = conn.get(SECRET_KEY)
    if not value:  # pragma: no cover - deleted between the two calls
        return shared_secret(conn)
    return bytes.fromhex(value.decode() if isinstance(value, bytes) else str(value))


def _signature(secret: bytes, key: str, expires: int) -> str:
    digest = hashlib.sha256(key.encode()).hexdigest()
    return hmac.new(secret, f"ifcflow-ui-session:{expires}:{digest}".encode(), hashlib.sha256).hexdigest()


def issue(key: str, secret: bytes, now: float | None = None, lifetime: int = LIFETIME) -> str:
    """A cookie value for a browser that entered ``key`` (which the caller has checked)."""
    expires = int((time.time() if now is None else now) + lifetime)
    return f"{expires}.{_signature(secret, key, expires)}"


def valid(cookie: str | None, keys: tuple[str, ...], secret: bytes, now: float | None = None) -> bool:
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
        found |= hmac.compare_digest(signature.encode(), _signature(secret, key, expires).encode())
    return found


def key_listed(key: str, keys: tuple[str, ...]) -> bool:
    """Whether ``key`` is one of ``keys`` (constant time over the keys)."""
    found = False
    for known in keys:
        found |= hmac.compare_digest(key.encode(), known.encode())
    return found
