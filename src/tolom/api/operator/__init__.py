"""The operator and service API (`/api/v1/...`, bearer API keys): one router per resource."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/v1")
