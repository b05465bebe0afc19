"""The back office in the browser: server-rendered pages under `/` (see docs/backoffice.md).

`router` is mounted by `tolom.app`; later pages guard themselves with `auth.signed_in` and
`auth.may(action)` and render with `pages.render`.
"""

from tolom.web import payments
from tolom.web.auth import WebOptions, may, signed_in
from tolom.web.routes import router

router.include_router(payments.router)

__all__ = ["WebOptions", "may", "router", "signed_in"]
