"""Every route caps the body it reads, and the operator API reads nothing before the key.

The requests are driven through httpx's ASGI transport, which hands the app the body chunk
by chunk as the app asks for it: the tests count how much of a large body the app pulled.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import Engine, func, select

from tolom import apikeys
from tolom.db.schema import customers

CHUNK = 64 * 1024


class Body:
    """A body of `chunks` chunks, made as the app reads it; counts what it gave."""

    def __init__(self, chunks: int, fill: bytes = b" ") -> None:
        self.chunks = chunks
        self.fill = fill
        self.given = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for _ in range(self.chunks):
            self.given += 1
            yield self.fill * CHUNK


def send(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://tolom") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def writer(engine: Engine) -> dict[str, str]:
    with engine.begin() as conn:
        token = apikeys.create(conn, name="writer", scopes=["write"])
    return {"Authorization": f"Bearer {token}"}


def test_operator_api_refuses_a_stranger_before_reading_the_body(app) -> None:
    body = Body(chunks=800)  # 50 MB, streamed without a Content-Length
    response = send(app, "POST", "/api/v1/customers", content=body)
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    assert body.given <= 1  # the transport may have handed over the first chunk


def test_operator_api_refuses_a_body_declared_over_the_cap_unread(app, engine) -> None:
    limit = app.state.runtime.settings.max_api_body_bytes
    body = Body(chunks=limit // CHUNK + 16)
    headers = {**writer(engine), "Content-Length": str((limit // CHUNK + 16) * CHUNK)}
    response = send(app, "POST", "/api/v1/customers", content=body, headers=headers)
    assert response.status_code == 413
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == "request_too_large"
    assert body.given <= 1


def test_operator_api_cuts_a_streamed_body_at_the_cap(app, engine) -> None:
    limit = app.state.runtime.settings.max_api_body_bytes
    body = Body(chunks=limit // CHUNK * 4)
    response = send(app, "POST", "/api/v1/customers", content=body, headers=writer(engine))
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"
    assert body.given <= limit // CHUNK + 2
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(customers)) == 0


def test_a_body_under_the_cap_is_still_taken(app, engine) -> None:
    response = send(
        app,
        "POST",
        "/api/v1/customers",
        json={"inn": "01904202310427", "name": "ОсОО «Ромашка»"},
        headers=writer(engine),
    )
    assert response.status_code in (200, 201), response.text


def test_back_office_form_is_capped(app) -> None:
    limit = app.state.runtime.settings.max_form_bytes
    body = Body(chunks=limit // CHUNK * 8, fill=b"a")
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    response = send(app, "POST", "/login", content=body, headers=headers)
    assert response.status_code == 413
    assert "Слишком большой запрос" in response.text
    assert body.given <= limit // CHUNK + 2


def test_unknown_path_is_capped_too(app) -> None:
    limit = app.state.runtime.settings.max_form_bytes
    body = Body(chunks=limit // CHUNK * 8)
    response = send(app, "POST", "/no/such/page", content=body)
    assert response.status_code in (404, 405, 413)
    assert body.given <= limit // CHUNK + 2


def test_registry_upload_page_has_its_own_larger_cap(app) -> None:
    from tolom.web.reconciliation import MAX_UPLOAD

    body = Body(chunks=MAX_UPLOAD // CHUNK + 64)
    headers = {"Content-Type": "multipart/form-data; boundary=x"}
    response = send(app, "POST", "/reconciliation/upload", content=body, headers=headers)
    # Not signed in: the page sends the visitor to log in, or the cap stops the body first.
    assert response.status_code in (303, 413)
    assert body.given <= MAX_UPLOAD // CHUNK + 3
