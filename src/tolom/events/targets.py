"""Where webhooks may go: public addresses only, unless an operator allows a network.

Accountants and admins type webhook URLs, and the worker POSTs to them from inside our
network and records each answer. Without this check the delivery log would be a port
scanner of the intranet and of the cloud's metadata service (SSRF).

Two checks, one rule (`forbidden`):

- at registration (`check_url`): a literal address in any spelling libc accepts
  (`2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`, `[::ffff:127.0.0.1]`), `localhost`, and
  a name that resolves (within a few seconds) to a forbidden address are refused;
- at delivery, always: `events.pinned.PinnedBackend` is the socket layer under the webhook client. It
  resolves the host once, refuses if any resolved address is forbidden, and connects to
  the addresses it checked — never resolving again, so a name that changes between the
  check and the connection (DNS rebinding) cannot slip through. TLS above it still uses
  the URL's name for SNI and certificate checks, and the Host header is the URL's.

`TOLOM_WEBHOOK_ALLOWED_NETWORKS` lists intranet networks whose receivers are allowed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import socket
import threading
from collections.abc import Iterable
from urllib.parse import urlsplit

from tolom.addresses import IPNetwork, in_networks
from tolom.texts import N_, Refusal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

REFUSED = "адрес запрещён"
RESOLVE_SECONDS = 3.0  # how long registration waits for a name to resolve

# Not covered by `is_global`/`is_private` in every Python version, refused explicitly.
_ALWAYS_FORBIDDEN = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host
        "100.64.0.0/10",  # carrier-grade NAT (RFC 6598)
        "192.0.0.0/24",  # IETF protocol assignments
        "198.18.0.0/15",  # benchmarking
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and the broadcast address
        "::/128",
        "::1/128",
        "64:ff9b:1::/48",  # local-use NAT64
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
# A host that libc's inet_aton may read as an IPv4 address in a legacy form.
_LEGACY_IPV4 = re.compile(r"[0-9][0-9a-fx.]*", re.IGNORECASE)


class TargetRefused(Refusal):
    """A webhook target we do not send to, worded by a catalogue key; the Russian text
    (`str()`, what a delivery records as its error) starts with REFUSED."""


def _embedded(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one leads to (IPv4-mapped, 6to4, NAT64), if any."""
    if isinstance(ip, ipaddress.IPv4Address):
        return None
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def forbidden(ip: IPAddress) -> bool:
    """Whether `ip` is not a public unicast address: loopback, private (RFC 1918, fc00::/7),
    link-local (169.254/16 with cloud metadata, fe80::/10), CGNAT, unspecified, multicast,
    reserved, documentation; an IPv6 address wrapping such an IPv4 one."""
    inner = _embedded(ip)
    if inner is not None:
        if forbidden(inner):
            return True
        if isinstance(ip, ipaddress.IPv6Address) and (ip.ipv4_mapped is not None or ip in _NAT64):
            return False  # ::ffff:a.b.c.d and 64:ff9b::a.b.c.d reach a.b.c.d, public
    return (
        any(ip in network for network in _ALWAYS_FORBIDDEN if network.version == ip.version)
        or not ip.is_global
        or ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
    )


def check_address(ip: IPAddress, allowed: Iterable[IPNetwork]) -> None:
    """Raise TargetRefused unless `ip` is public or inside an allowed network."""
    if forbidden(ip) and not in_networks(str(ip), allowed):
        raise TargetRefused(N_("webhook.error.target_internal"), ip=str(ip))


def literal(host: str) -> IPAddress | None:
    """The address `host` names literally, in any spelling libc accepts; None for a name."""
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return ip
    if _LEGACY_IPV4.fullmatch(host):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(host))
        except OSError:
            return None
    return None


def resolve(host: str, port: int | None) -> list[IPAddress]:
    """Every address `host` resolves to, in getaddrinfo's order, without duplicates."""
    found: list[IPAddress] = []
    for *_, sockaddr in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM):
        ip = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if ip not in found:
            found.append(ip)
    return found


def _resolve_briefly(host: str) -> list[IPAddress]:
    """`resolve`, given up after RESOLVE_SECONDS or on failure (delivery checks again)."""
    result: list[IPAddress] = []

    def run() -> None:
        with contextlib.suppress(OSError, UnicodeError, ValueError):
            result.extend(resolve(host, None))

    thread = threading.Thread(target=run, name="webhook-resolve", daemon=True)
    thread.start()
    thread.join(RESOLVE_SECONDS)
    return [] if thread.is_alive() else result


def check_scheme(url: str) -> None:
    """Only http(s), and no login in the URL (requests are signed instead)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefused(N_("webhook.error.target_scheme"), scheme=repr(parts.scheme))
    if parts.username is not None or parts.password is not None:
        raise TargetRefused(N_("webhook.error.target_credentials"))


def check_literal(url: str, allowed: Iterable[IPNetwork]) -> bool:
    """The checks that need no lookup: the scheme, no login, and a host written as an
    address (in any spelling); whether the host was such an address."""
    check_scheme(url)
    ip = literal(urlsplit(url).hostname or "")
    if ip is not None:
        check_address(ip, allowed)
    return ip is not None


def check_url(url: str, allowed: Iterable[IPNetwork]) -> None:
    """The registration check of an otherwise well-formed http(s) URL's host.

    A name that does not resolve now is accepted: it may be set up later, and delivery
    checks every address it resolves to then."""
    allowed = tuple(allowed)
    if check_literal(url, allowed):
        return
    host = urlsplit(url).hostname or ""
    name = host.rstrip(".").lower()
    found = _resolve_briefly(name)
    if name == "localhost" or name.endswith(".localhost"):  # RFC 6761: always this host
        found = found or [ipaddress.IPv4Address("127.0.0.1")]
    for resolved in found:
        check_address(resolved, allowed)
