"""The webhook client's socket layer: connections only to addresses `events.targets` has
checked, resolved once (see that module for the rule and why).

Kept apart from `targets` because it needs httpx and httpcore, which a server process
should not import before it delivers anything.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable

import httpcore
import httpx

from tolom.addresses import IPNetwork
from tolom.events.targets import REFUSED, TargetRefused, check_address, resolve


class PinnedBackend(httpcore.NetworkBackend):
    """Opens webhook connections only to checked addresses: resolve once, check all,
    connect to those very addresses (no second lookup between check and connect)."""

    def __init__(self, allowed: Iterable[IPNetwork]) -> None:
        self._allowed = tuple(allowed)
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            addresses = resolve(host, port)
        except (OSError, UnicodeError) as error:
            raise httpcore.ConnectError(f"cannot resolve {host!r}: {error}") from None
        if not addresses:
            raise httpcore.ConnectError(f"{host!r} resolves to no address")
        for ip in addresses:
            check_address(ip, self._allowed)
        failure: Exception | None = None
        for ip in addresses:
            try:
                return self._inner.connect_tcp(
                    str(ip), port, timeout, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        assert failure is not None
        raise failure

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise TargetRefused(f"{REFUSED}: локальный сокет {path}")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """httpx's own transport (TLS, pooling, HTTP/1.1) over PinnedBackend; environment
    proxies are not used, since a proxy would connect on our behalf, unchecked."""

    def __init__(
        self, allowed: Iterable[IPNetwork], ssl_context: ssl.SSLContext | None = None
    ) -> None:
        super().__init__(trust_env=False)
        limits = httpx.Limits()
        self._pool = httpcore.ConnectionPool(
            ssl_context=ssl_context or httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(allowed),
        )
