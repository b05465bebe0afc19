"""Who is calling the operator and service API: a bearer API key with enough scope."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tolom.apikeys import ApiKey
from tolom.httpkit.clients import request_address
from tolom.httpkit.problems import FieldError, ProblemError
from tolom.runtime import Runtime

bearer = HTTPBearer(
    auto_error=False,
    scheme_name="ApiKey",
    description="`Authorization: Bearer tolom_…` — a key made with `tolom apikey create`.",
)


CHALLENGE = {"WWW-Authenticate": 'Bearer realm="tolom"'}
# PostgreSQL text cannot hold U+0000 and no field of ours needs it: refused on every database.
NUL_MESSAGE = "строки не могут содержать символ NUL (U+0000)"


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated API caller: the key and the address it called from."""

    key: ApiKey
    address: str
    runtime: Runtime

    @property
    def actor(self) -> str:
        return self.key.actor


def authenticate(runtime: Runtime, token: str | None) -> ApiKey:
    """The caller's key, or the problem that refuses them (401, or 503 if keys are out of
    reach). Blocking (a cache miss reads the database): call it off the event loop."""
    if token is None:
        raise ProblemError("unauthenticated", "Нужен заголовок Authorization: Bearer <ключ API>")
    try:
        key = runtime.keys.authenticate(token)
    except Exception as error:  # the keys' table is out of reach
        raise ProblemError("temporarily_unavailable") from error
    if key is None:
        raise ProblemError("invalid_api_key", headers=CHALLENGE)
    return key


def require(scope: str, *alternatives: str) -> Callable[..., Caller]:
    """A dependency that lets the request through only with a key that grants `scope` (or
    one of the `alternatives`: e.g. charges are read by the СОЧИ system and by operators)."""
    accepted = (scope, *alternatives)

    def dependency(
        request: Request,
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
    ) -> Caller:
        runtime: Runtime = request.app.state.runtime
        key = getattr(request.state, "api_key", None)  # OperatorRoute's, before the body
        if key is None:
            key = authenticate(runtime, credentials.credentials if credentials else None)
        if not any(key.grants(s) for s in accepted):
            wanted = " или ".join(repr(s) for s in accepted)
            raise ProblemError(
                "insufficient_scope", f"Для этого действия нужен ключ с правом {wanted}"
            )
        where = getattr(request.state, "nul_in", None)  # found by OperatorRoute
        if where is not None:
            raise ProblemError(
                "invalid_request",
                f"Неверный запрос: {where}: {NUL_MESSAGE}",
                errors=[FieldError(field=where, message=NUL_MESSAGE)],
            )
        address = request_address(request, runtime.settings.trusted_proxies)
        return Caller(key, address, runtime)

    return dependency
