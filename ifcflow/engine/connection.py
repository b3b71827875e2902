"""Choosing and reaching the Redis server: ``--redis URL``, else ``IFCFLOW_REDIS_URL``."""

from __future__ import annotations

import os

from redis import Redis
from redis.exceptions import RedisError

ENV = "IFCFLOW_REDIS_URL"

from ..errors import RedisUnavailable  # noqa: E402


def configured_url(option: str | None) -> str | None:
    """The Redis URL the user chose, or None when neither ``--redis`` nor ``IFCFLOW_REDIS_URL`` is set."""
    return option or os.environ.get(ENV) or None


def connect(url: str, *, check: bool = True) -> Redis:
    """A client for ``url``; with ``check``, one PING so an unreachable server fails here, clearly."""
    try:
        conn = Redis.from_url(url, socket_connect_timeout=5, health_check_interval=30)
    except ValueError as exc:
        raise RedisUnavailable(url, f"invalid URL ({exc})") from None
    if check:
        try:
            conn.ping()
        except RedisError as exc:
            raise RedisUnavailable(url, str(exc).rstrip(".")) from None
    return conn
