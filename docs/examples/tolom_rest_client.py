#!/usr/bin/env python3
"""A complete Tolom REST agent client in the standard library: sign, send, read the answer.

    export TOLOM_URL=https://pay.example.kg TOLOM_AGENT=optima TOLOM_SIGNING_KEY=<64 hex>
    python3 tolom_rest_client.py check sochi 01904202310427
    python3 tolom_rest_client.py pay sochi 01904202310427 500.00 1234567
    python3 tolom_rest_client.py status 1234567
    python3 tolom_rest_client.py cancel 1234567 "Клиент ошибся номером"

Prints the HTTP status and the JSON answer. On 503, on 202 payment_pending (no receipt
yet) or with no answer at all repeat the same request: a pay or cancel with the same txn_id
is never applied twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime
from typing import Any


def authorization(agent: str, key_hex: str, method: str, path: str, body: bytes) -> str:
    """The Authorization header: HMAC-SHA256 over method, path, timestamp and body hash."""
    timestamp = int(time.time())
    string_to_sign = f"{method}\n{path}\n{timestamp}\n{hashlib.sha256(body).hexdigest()}"
    signature = hmac.new(
        bytes.fromhex(key_hex), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    return f"Tolom-HMAC-SHA256 agent={agent},timestamp={timestamp},signature={signature}"


def call(method: str, path: str, payload: dict[str, Any] | None = None) -> tuple[int, Any]:
    """Send one signed request; returns (HTTP status, decoded JSON)."""
    body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
    url = os.environ["TOLOM_URL"] + path
    if not url.startswith(("https://", "http://")):
        raise SystemExit("TOLOM_URL must start with https:// (or http:// for a local test)")
    request = urllib.request.Request(url, data=body or None, method=method)  # noqa: S310
    request.add_header(
        "Authorization",
        authorization(
            os.environ["TOLOM_AGENT"], os.environ["TOLOM_SIGNING_KEY"], method, path, body
        ),
    )
    if body:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:  # 4xx/5xx: an RFC 9457 problem document
        return error.code, json.loads(error.read() or b"null")


def main(argv: list[str]) -> int:
    command, *args = argv
    if command == "check":
        service, account = args
        status, answer = call(
            "POST", "/api/v1/agent/check", {"service": service, "account": account}
        )
    elif command == "pay":
        service, account, amount, txn_id = args
        status, answer = call(
            "POST",
            "/api/v1/agent/payments",
            {
                "txn_id": txn_id,
                "txn_date": datetime.now().astimezone().isoformat(timespec="seconds"),
                "service": service,
                "account": account,
                "amount": amount,
            },
        )
    elif command == "status":
        (txn_id,) = args
        status, answer = call("GET", f"/api/v1/agent/payments/{txn_id}")
    elif command == "cancel":
        txn_id, reason = args
        status, answer = call("POST", f"/api/v1/agent/payments/{txn_id}/cancel", {"reason": reason})
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(status)
    print(json.dumps(answer, ensure_ascii=False, indent=2))
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
