"""Files as answers (PDF invoices and receipts, XLSX acts, registries): one way to name the
download, one OpenAPI description of it, so the fuzzer and clients see what is sent, and
files built on disk streamed out and deleted after."""

from __future__ import annotations

import re
from typing import IO, Any

from starlette.responses import Response, StreamingResponse

from tolom.backoffice.exports import XLSX_MEDIA_TYPE, file_chunks

PDF_MEDIA_TYPE = "application/pdf"
FILE_SCHEMA = {"type": "string", "format": "binary"}
_SAFE_NAME = re.compile(r"[A-Za-z0-9._-]{1,100}")


class PdfResponse(Response):
    media_type = PDF_MEDIA_TYPE


def pdf_answer(content: bytes, filename: str) -> PdfResponse:
    """The PDF as a download named `filename` (ASCII letters, digits, '.', '_', '-')."""
    if _SAFE_NAME.fullmatch(filename) is None:  # names are built from validated numbers
        raise ValueError(f"unsafe file name {filename!r}")
    return PdfResponse(content, headers=_attachment_headers(filename))


def pdf_responses(example: str, description: str) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI `responses` entry of a route answering `pdf_answer`."""
    return {
        200: {
            "description": description,
            "content": {PDF_MEDIA_TYPE: {"schema": FILE_SCHEMA}},
            "headers": disposition_header(example),
        }
    }


def disposition_header(example: str) -> dict[str, Any]:
    """The OpenAPI `headers` entry of an attachment named like `example`."""
    return {
        "Content-Disposition": {
            "description": f'`attachment; filename="{example}"`',
            "schema": {"type": "string"},
        }
    }


class XlsxResponse(Response):
    media_type = XLSX_MEDIA_TYPE


def xlsx_answer(content: bytes, filename: str) -> XlsxResponse:
    """A workbook in memory as a download named `filename`, never cached."""
    return XlsxResponse(content, headers=_attachment_headers(filename))


def _attachment_headers(filename: str) -> dict[str, str]:
    return {
        "Content-Disposition": f'attachment; filename="{filename}"',
        "Cache-Control": "no-store",  # a file of ours names payers and amounts
    }


def file_attachment(file: IO[bytes], size: int, filename: str, media_type: str) -> Response:
    """A file built on disk (at its start, `size` bytes) as a download, streamed, then
    closed (which deletes a temporary file)."""
    return StreamingResponse(
        file_chunks(file),
        media_type=media_type,
        headers={**_attachment_headers(filename), "Content-Length": str(size)},
    )
