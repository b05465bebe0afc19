"""Who is calling: the client's address, believing X-Forwarded-For only from trusted proxies.

One implementation for the gateways' allow-lists, the operator API, the back office, the
audit log and login throttling: if any of them read the header differently, an agent's
allow-list could be bypassed by a spelling the others would catch.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from starlette.requests import HTTPConnection

from tolom.addresses import IPNetwork, in_networks


def client_address(
    peer: str | None, forwarded_for: Iterable[str] | str | None, trusted: Sequence[IPNetwork]
) -> str:
    """The real client address.

    The socket's peer, unless that peer is a trusted proxy: then the right-most hop in
    X-Forwarded-For that is not itself a trusted proxy (the left part is client-controlled).
    A request may carry the header more than once (a proxy such as HAProxy with `option
    forwardfor` appends its own line rather than extending the client's): all lines are
    read, in order, as one list — as RFC 9110 §5.3 combines repeated fields.
    """
    address = peer or "unknown"
    if not trusted or not forwarded_for or not in_networks(address, trusted):
        return address
    lines = [forwarded_for] if isinstance(forwarded_for, str) else list(forwarded_for)
    hops = [hop.strip() for line in lines for hop in line.split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not in_networks(hop, trusted):
            return hop
        address = hop
    return address


def request_address(request: HTTPConnection, trusted: Sequence[IPNetwork]) -> str:
    """`client_address` of a Starlette request, with every X-Forwarded-For line."""
    return client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
        trusted,
    )
