"""The REST gateway's request signature: HMAC-SHA256 over method, target, time and body.

    Authorization: Tolom-HMAC-SHA256 agent=<code>,timestamp=<unix seconds>,signature=<hex>

    string to sign = METHOD "\\n" TARGET "\\n" TIMESTAMP "\\n" hex(SHA-256(body))

TARGET is the path with its query string exactly as sent ("/api/v1/agent/payments");
the body is hashed byte for byte as sent (an empty body hashes to e3b0c442…). The key is
the agent's signing key (`tolom agent create` prints it; it is HMAC-SHA256 of the secret
with the label "tolom-agent-signing-key"). A timestamp more than five minutes away from
our clock is refused, which bounds how long a captured request could be replayed — and a
replayed pay or cancel is idempotent anyway.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

SCHEME = "Tolom-HMAC-SHA256"
MAX_SKEW_SECONDS = 300
_PARAM = re.compile(r"\s*([a-z]+)=([^,\s]*)\s*")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_DUMMY_KEY = bytes(32)


@dataclass(frozen=True, slots=True)
class SignedBy:
    """What the Authorization header claims: who signed, when, and the signature."""

    agent: str
    timestamp: int
    signature: str


def string_to_sign(method: str, target: str, timestamp: int, body: bytes) -> bytes:
    body_hash = hashlib.sha256(body).hexdigest()
    return f"{method.upper()}\n{target}\n{timestamp}\n{body_hash}".encode()


def sign(key: bytes, method: str, target: str, timestamp: int, body: bytes) -> str:
    """The hex signature of a request (what clients compute; the tests use it too)."""
    message = string_to_sign(method, target, timestamp, body)
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def authorization(
    agent: str, key: bytes, method: str, target: str, timestamp: int, body: bytes
) -> str:
    """A complete Authorization header value."""
    signature = sign(key, method, target, timestamp, body)
    return f"{SCHEME} agent={agent},timestamp={timestamp},signature={signature}"


def parse_authorization(header: str | None) -> SignedBy | None:
    """The claims of an Authorization header, or None when it is absent or not ours."""
    if not header or len(header) > 512:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme != SCHEME:
        return None
    params: dict[str, str] = {}
    for part in rest.split(","):
        match = _PARAM.fullmatch(part)
        if match is None or match.group(1) in params:
            return None
        params[match.group(1)] = match.group(2)
    if set(params) != {"agent", "timestamp", "signature"}:
        return None
    if not _TIMESTAMP.fullmatch(params["timestamp"]) or not params["agent"]:
        return None
    if not _SIGNATURE.fullmatch(params["signature"]) or len(params["agent"]) > 32:
        return None
    return SignedBy(params["agent"], int(params["timestamp"]), params["signature"])


def signature_matches(
    key: bytes | None, claimed: SignedBy, method: str, target: str, body: bytes
) -> bool:
    """Constant-time check; an unknown agent (key None) costs the same work and fails."""
    expected = sign(key or _DUMMY_KEY, method, target, claimed.timestamp, body)
    return hmac.compare_digest(expected, claimed.signature) and key is not None


def fresh(timestamp: int, now: float) -> bool:
    """Whether a signature's timestamp is within the allowed skew of our clock."""
    return abs(now - timestamp) <= MAX_SKEW_SECONDS
