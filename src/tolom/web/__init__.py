"""The back office in the browser: server-rendered pages under `/` (see docs/backoffice.md).

`router` is mounted by `tolom.app`; later pages guard themselves with `auth.signed_in` and
`auth.may(action)` and render with `pages.render`.
"""

from tolom.web import (
    agents,
    applications,
    audit,
    cash,
    customers,
    events,
    invoices,
    orders,
    payments,
    reconciliation,
    simulator,
    users,
)
from tolom.web.auth import WebOptions, may, signed_in
from tolom.web.routes import router

router.include_router(payments.router)
router.include_router(agents.router)
router.include_router(invoices.router)
router.include_router(cash.router)
router.include_router(users.router)
router.include_router(audit.router)
router.include_router(customers.router)
router.include_router(orders.router)
router.include_router(applications.router)
router.include_router(events.router)
router.include_router(reconciliation.router)
router.include_router(simulator.router)

__all__ = ["WebOptions", "may", "router", "signed_in"]
