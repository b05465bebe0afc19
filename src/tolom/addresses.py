"""IP addresses and networks, as allow-lists and trusted proxies use them."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def in_networks(address: str, networks: Iterable[IPNetwork]) -> bool:
    """Whether `address` lies in any of `networks`; text that is not an address never does.

    An IPv4-mapped IPv6 address (::ffff:10.0.0.5, as a dual-stack socket reports IPv4
    peers) counts as its IPv4 address.
    """
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in networks)
