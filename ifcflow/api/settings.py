"""Server settings from the command line and the environment (data folder, Redis, keys, allow-lists)."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..engine import outbound
from ..errors import IfcflowError

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DATA_ENV = "IFCFLOW_DATA"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
"""The ``Host`` names a server bound to loopback answers by default (``IFCFLOW_ALLOWED_HOSTS``)."""
MAX_UPLOAD = 2 * 1024**3
"""Default upload size limit: 2 GiB (``IFCFLOW_MAX_UPLOAD``, bytes)."""


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def parse_networks(values: list[str], env: str) -> tuple[Network, ...]:
    nets = []
    for value in values:
        try:
            nets.append(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise IfcflowError(f"{env}: {value!r} is not an IP address or CIDR network (e.g. 127.0.0.1/32, "
                               "10.0.0.0/8)") from None
    return tuple(nets)


def loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_hosts(env: dict[str, str], bind: str) -> tuple[str, ...]:
    """``IFCFLOW_ALLOWED_HOSTS``; unset: the loopback names when bound to loopback, else any name (``*``: every
    request needs a key there, which a rebinding page does not have) unless ``IFCFLOW_API_ALLOW_NETS`` lets
    clients in without a key, where the setting is required."""
    listed = tuple(_split(env.get("IFCFLOW_ALLOWED_HOSTS")))
    if listed:
        return listed
    if loopback(bind):
        return LOOPBACK_HOSTS
    if _split(env.get("IFCFLOW_API_ALLOW_NETS")):
        raise IfcflowError(f"listening on {bind} with IFCFLOW_API_ALLOW_NETS (clients without a key) needs "
                           "IFCFLOW_ALLOWED_HOSTS: the host names clients use for this server, comma-separated "
                           "(e.g. ifcflow.example.com,10.0.0.5), so a web page elsewhere cannot reach it by DNS "
                           "rebinding")
    return ("*",)


def destinations(env: dict[str, str], name: str) -> tuple[str, ...]:
    """An outbound allow-list (host, IP or CIDR, each with an optional :port or :*); a bad entry stops the server."""
    entries = tuple(_split(env.get(name)))
    for entry in entries:
        try:
            outbound.parse_entry(entry)
        except outbound.DestinationRefused as exc:
            raise IfcflowError(f"{name}: {exc}") from None
    return entries


@dataclass(frozen=True)
class Settings:
    """Everything the API server needs; :meth:`from_env` reads the environment."""

    data: Path
    redis_url: str
    api_keys: tuple[str, ...] = ()
    allow_nets: tuple[Network, ...] = ()
    webhook_allow: tuple[str, ...] = ()
    download_allow: tuple[str, ...] = ()
    """Hosts ``POST /download-from-url`` may fetch from (``IFCFLOW_DOWNLOAD_ALLOW``; empty: the endpoint is off)."""
    webhook_secret: str | None = None
    max_upload: int = MAX_UPLOAD
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    pipelines: Path = field(default_factory=lambda: Path("pipelines").resolve())
    ttl: int = 7 * 86400
    events_interval: float = 0.05
    storage_url: str = ""
    """``IFCFLOW_STORAGE``: ``s3://bucket/prefix`` keeps uploads and outputs in that store (see api/objects.py);
    empty or a folder: files live in the data folder."""
    watch_interval: float = 0.5

    @property
    def uploads(self) -> Path:
        return self.data / "uploads"

    @property
    def output(self) -> Path:
        return self.data / "output"

    @property
    def examples(self) -> Path:
        """Sample files clients name as ``/examples/x`` (read-only for jobs; fill it with ``ifcflow demo`` or by
        hand)."""
        return self.data / "examples"

    @property
    def runs(self) -> Path:
        """Where pipelines submitted over HTTP write: ``<data>/output/runs/<run_id>/<step>/``."""
        return self.output / "runs"

    def prepare(self) -> None:
        for folder in (self.uploads, self.output, self.runs, self.examples):
            folder.mkdir(parents=True, exist_ok=True)

    @classmethod
    def from_env(cls, data: str | Path | None = None, redis_url: str | None = None,
                 environ: dict[str, str] | None = None, bind: str = "127.0.0.1") -> Settings:
        env = dict(os.environ if environ is None else environ)
        url = redis_url or env.get("IFCFLOW_REDIS_URL")
        if not url:
            raise IfcflowError("ifcflow serve needs a shared Redis: pass --redis URL or set IFCFLOW_REDIS_URL "
                               "(workers must use the same one)")
        keys = tuple(_split(env.get("IFCFLOW_API_KEYS")) + _split(env.get("IFC_PIPELINE_API_KEY")))
        try:
            max_upload = int(env.get("IFCFLOW_MAX_UPLOAD") or MAX_UPLOAD)
        except ValueError:
            raise IfcflowError("IFCFLOW_MAX_UPLOAD must be a number of bytes, e.g. 2147483648") from None
        return cls(
            data=Path(data or env.get(DATA_ENV) or "ifcflow-data").resolve(),
            redis_url=url,
            api_keys=keys,
            allow_nets=parse_networks(_split(env.get("IFCFLOW_API_ALLOW_NETS")), "IFCFLOW_API_ALLOW_NETS"),
            webhook_allow=destinations(env, "IFCFLOW_WEBHOOK_ALLOW"),
            download_allow=destinations(env, "IFCFLOW_DOWNLOAD_ALLOW"),
            webhook_secret=env.get("IFCFLOW_WEBHOOK_SECRET") or None,
            max_upload=max_upload,
            allowed_hosts=allowed_hosts(env, bind),
            pipelines=Path(env.get("IFCFLOW_PIPELINES") or "pipelines").resolve(),
            storage_url=(env.get("IFCFLOW_STORAGE") or "").strip(),
        )
