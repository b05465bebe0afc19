"""PDF answers of the operator API (invoices, receipts): one media type, one way to name the
file, one OpenAPI description, so the fuzzer and clients see what is sent."""

from __future__ import annotations

import re
from typing import Any

from starlette.responses import Response

PDF_MEDIA_TYPE = "application/pdf"
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


class PdfResponse(Response):
    media_type = PDF_MEDIA_TYPE


def pdf_answer(content: bytes, filename: str) -> PdfResponse:
    """The PDF as a download named `filename` (ASCII letters, digits, '.', '_', '-')."""
    if _SAFE_NAME.fullmatch(filename) is None:  # names are built from validated numbers
        raise ValueError(f"unsafe file name {filename!r}")
    return PdfResponse(
        content,
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",  # it names the payer
        },
    )


def pdf_responses(example: str, description: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entry of a route answering `pdf_answer`."""
    return {
        200: {
            "description": description,
            "content": {PDF_MEDIA_TYPE: {"schema": {"type": "string", "format": "binary"}}},
            "headers": {
                "Content-Disposition": {
                    "description": f'`attachment; filename="{example}"`',
                    "schema": {"type": "string"},
                }
            },
        }
    }
