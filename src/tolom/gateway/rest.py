"""The REST agent gateway (JSON, HMAC-signed): being written."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1/agent", tags=["agent"])
SECURITY_SCHEME: dict[str, Any] = {"type": "apiKey", "in": "header", "name": "Authorization"}
