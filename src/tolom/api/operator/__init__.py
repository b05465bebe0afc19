"""The operator and service API (`/api/v1/...`, bearer API keys): one router per resource."""

from __future__ import annotations

from fastapi import APIRouter

from tolom.api.operator import (
    charges,
    customers,
    invoices,
    ledger,
    manual,
    orders,
    payments,
    reconciliation,
    tariffs,
)

router = APIRouter(prefix="/api/v1")
router.include_router(customers.router)
router.include_router(invoices.router)
router.include_router(payments.router)
router.include_router(manual.router)
router.include_router(ledger.router)
router.include_router(charges.router)
router.include_router(tariffs.router)
router.include_router(orders.router)
router.include_router(reconciliation.router)
