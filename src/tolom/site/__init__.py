"""The customer's side: public pages anyone may open without logging in (docs/customers.md).

An adapter like the back office (`web/`), for customers instead of operators: it reads a
request, calls the core and renders a page; it holds no rule of its own. Mobile-first,
Russian by default, Kyrgyz and English by `?lang=` (remembered in a cookie). Every page is
not cached, not indexed and loads nothing from elsewhere (`site.pages.HEADERS`).
"""

from __future__ import annotations

from fastapi import APIRouter

from tolom.site import apply, cabinet, pay, receipts, status

router = APIRouter(include_in_schema=False)
router.include_router(receipts.router)  # /r/{token}: a receipt's public confirmation
router.include_router(pay.router)  # /pay: how to pay, and whether a number can be paid
router.include_router(status.router)  # /status: an order's stages by invoice number
router.include_router(apply.router)  # /apply: the online application for a signature
router.include_router(cabinet.router)  # /cabinet: the customer's own account, by a code
