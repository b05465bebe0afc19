"""Who is calling: the client address and the agent's credentials, for every agent protocol."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence

from tolom.addresses import IPNetwork, in_networks


def client_address(
    peer: str | None, forwarded_for: str | None, trusted: Sequence[IPNetwork]
) -> str:
    """The real client address.

    The socket's peer, unless that peer is a trusted proxy: then the right-most address in
    X-Forwarded-For that is not itself a trusted proxy (the left part is client-controlled).
    """
    address = peer or "unknown"
    if not trusted or not forwarded_for or not in_networks(address, trusted):
        return address
    for hop in reversed([h.strip() for h in forwarded_for.split(",") if h.strip()]):
        if not in_networks(hop, trusted):
            return hop
        address = hop
    return address


def basic_credentials(header: str | None) -> tuple[str, str] | None:
    """(user, password) from an `Authorization: Basic ...` header, or None if absent or broken."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded or len(encoded) > 512:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, separator, password = decoded.partition(":")
    if not separator or not user:
        return None
    return user, password
