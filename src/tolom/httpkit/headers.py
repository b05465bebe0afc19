"""Headers every answer carries, whichever adapter made it.

* `Cache-Control: no-store` on every answer under /api/ that does not set its own: they
  carry payments, balances and people's names, which no browser or proxy should keep.
* `Strict-Transport-Security` when Tolom is reached over https (its public base URL says
  so): a browser that has seen it never talks to us over plain http again.
* A Content-Security-Policy for the API's documentation page (/docs), which runs Swagger
  UI's scripts from our own copy: only those, and its one inline script by its hash.
"""

from __future__ import annotations

import base64
import hashlib
import re

from starlette.types import Message, Scope, Send

HSTS = "max-age=31536000"


def docs_policy(page: str) -> str:
    """The CSP for the docs page `page`: our own files plus its inline scripts, by hash."""
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in re.findall(r"<script>(.*?)</script>", page, flags=re.DOTALL)
    )
    return (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )


def with_security_headers(scope: Scope, send: Send, hsts: bool) -> Send:
    """`send`, adding the headers above to the answer's start."""
    api = scope["path"].startswith("/api/")
    if not api and not hsts:
        return send

    async def guarded(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            names = {name.lower() for name, _ in headers}
            if api and b"cache-control" not in names:
                headers.append((b"cache-control", b"no-store"))
            if hsts and b"strict-transport-security" not in names:
                headers.append((b"strict-transport-security", HSTS.encode()))
            message = {**message, "headers": headers}
        await send(message)

    return guarded
