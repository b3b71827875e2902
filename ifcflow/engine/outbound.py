"""Outbound HTTP: which destinations an allow-list admits, and connecting only to the address that was checked.

One place for the rules that webhooks (:mod:`ifcflow.engine.webhooks`) and ``POST /download-from-url``
(:mod:`ifcflow.api.fetch`) share:

- **Entries** (``IFCFLOW_WEBHOOK_ALLOW``, ``IFCFLOW_DOWNLOAD_ALLOW``): a host name, an IP address or a CIDR network,
  each with an optional port: ``hooks.example``, ``n8n.internal:5678``, ``10.0.0.0/8:8080``, ``[fd00::1]:443``,
  ``127.0.0.1:*``. Without a port an entry admits only the scheme's default port (80 for http, 443 for https), so
  allowing a host never opens its other services (Redis, a database, an admin port); ``:*`` admits any port, on
  purpose.
- **Names are matched by name**, IP literals against addresses and networks; names are never resolved against
  networks at submit.
- **At send time** the host is resolved once and every address is checked: an address inside a listed network is
  fine; for a host listed by name, any address except loopback, link-local, multicast, unspecified and reserved
  ones (DNS of a listed name cannot send ifcflow to the server itself or to cloud metadata), unless that address is
  listed itself. The connection then goes to the checked address (``Host`` header and TLS server name stay the
  URL's), so DNS cannot change the answer in between. Redirects are the caller's to refuse or re-check.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, urlsplit

from ..errors import IfcflowError

if TYPE_CHECKING:
    import httpx

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
ANY_PORT = -1


class DestinationRefused(IfcflowError):
    """A URL is malformed, or its host, port or resolved address is not on the allow-list."""


@dataclass(frozen=True)
class Entry:
    """One allow-list entry: a name or a network, and a port (None: the scheme's default; ANY_PORT: any)."""

    name: str | None
    network: Network | None
    port: int | None

    def admits_port(self, port: int, default: int) -> bool:
        return self.port == ANY_PORT or port == (default if self.port is None else self.port)


def _split_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, _port(rest[1:], text) if rest.startswith(":") else None
    if text.count(":") == 1:
        host, _, port = text.partition(":")
        return host, _port(port, text)
    return text, None


def _port(text: str, entry: str) -> int:
    if text == "*":
        return ANY_PORT
    if not (text.isascii() and text.isdigit()) or not 0 < int(text) < 65536:
        raise DestinationRefused(f"allow-list entry {entry!r} has a bad port; write host:port (1-65535) or host:*")
    return int(text)


def parse_entry(text: str) -> Entry:
    host, port = _split_port(text.strip())
    try:
        return Entry(None, ipaddress.ip_network(host, strict=False), port)
    except ValueError:
        return Entry(host.lower().rstrip("."), None, port)


def entries(allow: tuple[str, ...]) -> list[Entry]:
    found = []
    for text in allow:
        try:
            found.append(parse_entry(text))
        except DestinationRefused:
            continue  # a malformed entry admits nothing (settings report it at start)
    return found


def literal(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None


def default_port(scheme: str) -> int:
    return 443 if scheme == "https" else 80


def split_url(url: str, what: str = "URL") -> SplitResult:
    """The parts of an http(s) URL with a host, no credentials and a valid port; DestinationRefused if not."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise DestinationRefused(f"{what} {url!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise DestinationRefused(f"{what} {url!r} must be an http:// or https:// URL with a host")
    if parts.username or parts.password:
        raise DestinationRefused(f"{what} URLs must not carry credentials")
    return parts


def name_entries(host: str, port: int, default: int, allow: tuple[str, ...]) -> list[Entry]:
    """Entries listing ``host`` by name for this port."""
    name = host.lower().rstrip(".")
    if literal(name) is not None:
        return []
    return [e for e in entries(allow) if e.name == name and e.admits_port(port, default)]


def address_listed(address: Address, port: int, default: int, allow: tuple[str, ...]) -> bool:
    return any(e.network is not None and address in e.network and e.admits_port(port, default)
               for e in entries(allow))


def url_allowed(parts: SplitResult, allow: tuple[str, ...]) -> bool:
    """Whether the URL's host and port are listed (names by name, IP literals by network); nothing resolved."""
    host = parts.hostname or ""
    port, default = parts.port or default_port(parts.scheme), default_port(parts.scheme)
    address = literal(host)
    if address is not None:
        return address_listed(address, port, default, allow)
    return bool(name_entries(host, port, default, allow))


def port_hint(parts: SplitResult, allow: tuple[str, ...]) -> str:
    """Why a listed host is refused on this port, or ''."""
    host, port = parts.hostname or "", parts.port or default_port(parts.scheme)
    listed = any(e.name == host.lower().rstrip(".") for e in entries(allow)) or (
        (address := literal(host)) is not None and any(e.network is not None and address in e.network
                                                       for e in entries(allow)))
    if not listed:
        return ""
    shown = f"[{host}]" if ":" in host else host
    return (f"; port {port} of {host} is not listed: an entry without a port allows only 80 (http) and 443 "
            f"(https); list {shown}:{port} to allow it")


METADATA = frozenset(ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200"))
"""Cloud metadata services outside the link-local range (AWS's IPv6 endpoint, Alibaba Cloud's)."""


def _special(address: Address) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    return (address.is_loopback or address.is_link_local or address.is_multicast or address.is_unspecified
            or address.is_reserved or address in METADATA or (mapped is not None and mapped in METADATA))


def resolve(parts: SplitResult, allow: tuple[str, ...] | None) -> Address:
    """Resolve the URL's host once and check every address (``allow`` None: any); the address to connect to."""
    host = parts.hostname or ""
    port, default = parts.port or default_port(parts.scheme), default_port(parts.scheme)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise DestinationRefused(f"host {host!r} does not resolve ({exc})") from None
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not addresses:
        raise DestinationRefused(f"host {host!r} does not resolve")
    if allow is not None:
        if literal(host) is not None and not address_listed(addresses[0], port, default, allow):
            raise DestinationRefused(f"host {host!r} is not allowed on port {port}; list it (with :{port} unless "
                                     "that is the scheme's default port) if it is meant")
        by_name = bool(name_entries(host, port, default, allow))
        for address in addresses:
            if address_listed(address, port, default, allow) or (by_name and not _special(address)):
                continue
            raise DestinationRefused(f"host {host!r} resolves to {address}, an internal address that is not "
                                     "listed (a name listed by name may not reach loopback, link-local or reserved "
                                     f"addresses); list {address} itself if it is meant")
    return addresses[0]


def pinned_request(client: httpx.Client, method: str, parts: SplitResult, address: Address,
                   headers: dict[str, str] | None = None, content: bytes | None = None) -> httpx.Request:
    """A request to ``parts``'s URL that connects to ``address`` (Host header and TLS server name unchanged)."""
    shown = f"[{address}]" if address.version == 6 else str(address)
    pinned = parts._replace(netloc=shown + (f":{parts.port}" if parts.port else "")).geturl()
    host_header = parts.netloc.rpartition("@")[2]
    return client.build_request(method, pinned, content=content, headers={**(headers or {}), "Host": host_header},
                                extensions={"sni_hostname": parts.hostname or ""})
