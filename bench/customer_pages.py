"""How fast is every customer page on the embedded database with the demo data?

Target (issue 15): server time under 100 ms on SQLite with the demo (`tolom demo`), the
newcomer's one-command installation.

1. A fresh SQLite file in a temporary folder is migrated, prepared and filled with the demo
   (`tolom.demo.fill_demo`, the same data `scripts/dev run` shows), with the console e-mail
   back-end.
2. The real application (`tolom.app.create_app`) runs in this process and is called through
   `httpx.ASGITransport`; the clock runs around the ASGI call only (request in, last body
   byte out), so it is server time without the network. The cabinet is signed in the way a
   customer does it: the INN of the demo's first customer, the code read from what the
   console e-mail back-end writes to the log.
3. Every sample is requested once to warm up, then --repeat times; p50, p95 and max are
   printed with the status and the answer's size. The process's CPU time is printed too.

A benchmark, not a test: it exits 1 if a page does not answer with its expected status,
never because of speed (the "over" column names the pages that miss the target; the PDFs
the cabinet links to are files, listed but not held to it).

Usage:  .venv/bin/python bench/customer_pages.py [--repeat 30] [--json results.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from tolom import installation  # noqa: E402
from tolom.app import create_app  # noqa: E402
from tolom.db import migrate  # noqa: E402
from tolom.db.engine import make_engine  # noqa: E402
from tolom.demo import fill_demo  # noqa: E402
from tolom.runtime import Runtime  # noqa: E402
from tolom.settings import Settings  # noqa: E402

TARGET_MS = 100.0


@dataclass(frozen=True)
class Sample:
    name: str
    method: str
    path: str
    status: int
    data: dict[str, str] | None = None
    download: bool = False  # a file (PDF), not a page: listed, not held to the target


class Codes(logging.Handler):
    """The sign-in codes the console e-mail back-end writes to the log."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.last: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"\b(\d{6})\b", record.getMessage().split("\n", 1)[-1])
        if found:
            self.last = found.group(1)


async def timed(client: httpx.AsyncClient, sample: Sample) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    if sample.method == "GET":
        answer = await client.get(sample.path)
    else:
        answer = await client.post(sample.path, data=sample.data)
    return (time.perf_counter() - started) * 1000, answer


def form_value(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]+)"', html)
    if found is None:
        raise SystemExit(f"no {name} in the page")
    return found.group(1)


async def run(repeat: int) -> list[dict[str, object]]:
    folder = Path(tempfile.mkdtemp(prefix="tolom-bench-site-"))
    settings = Settings(
        database_url=f"sqlite:///{folder / 'demo.sqlite3'}",
        email_backend="console",
        sms_backend="console",
        cabinet_resend_seconds=0,
        cabinet_codes_per_address=10_000,
        cabinet_codes_per_inn=10_000,
    )
    engine = make_engine(settings)
    migrate.upgrade(engine)
    with engine.begin() as conn:
        installation.prepare(conn)
        demo = fill_demo(conn, validity_days=30)
    inn = demo.customers[0].inn
    invoice = demo.invoices[0].number
    codes = Codes()
    mail_log = logging.getLogger("tolom.notifications.email")
    mail_log.addHandler(codes)
    mail_log.setLevel(logging.INFO)
    app = create_app(runtime=Runtime.on(settings, engine))
    transport = httpx.ASGITransport(app=app, client=("198.51.100.20", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        sign_in = await client.get("/cabinet")
        await client.post(
            "/cabinet/code",
            data={"form": form_value(sign_in.text, "form"), "inn": inn, "channel": "email"},
        )
        if codes.last is None:
            raise SystemExit("no sign-in code was written to the log")
        await client.post(
            "/cabinet/code/check",
            data={"form": client.cookies.get("tolom_cabinet_form") or "", "code": codes.last},
        )
        cabinet = await client.get("/cabinet")
        if 'data-page="cabinet"' not in cabinet.text:
            raise SystemExit("the cabinet did not sign in")
        receipt = re.search(r'href="(/cabinet/receipts/\d+\.pdf)"', cabinet.text)
        samples = [
            Sample("pay", "GET", "/pay", 200),
            Sample("pay: check an INN", "GET", f"/pay?service=sochi&number={inn}", 200),
            Sample("pay: check an invoice", "GET", f"/pay?service=eds&number={invoice}", 200),
            Sample("status of an invoice", "GET", f"/status?invoice={invoice}", 200),
            Sample("apply: the form", "GET", "/apply", 200),
            Sample("cabinet", "GET", "/cabinet", 200),
            Sample(
                "cabinet: a year's statement", "GET", "/cabinet?from=2026-01-01&to=2026-12-31", 200
            ),
        ]
        # The PDFs the cabinet links to, if the demo customer has any this month.
        pdf = re.search(r'href="(/cabinet/invoices/\d+\.pdf)"', cabinet.text)
        if pdf is not None:
            samples.append(Sample("cabinet: invoice PDF", "GET", pdf.group(1), 200, download=True))
        if receipt is not None:
            samples.append(
                Sample("cabinet: receipt PDF", "GET", receipt.group(1), 200, download=True)
            )
        results: list[dict[str, object]] = []
        cpu_started = time.process_time()
        for sample in samples:
            _, first = await timed(client, sample)
            if first.status_code != sample.status:
                raise SystemExit(f"{sample.path}: {first.status_code}, expected {sample.status}")
            times = [(await timed(client, sample))[0] for _ in range(repeat)]
            times.sort()
            results.append(
                {
                    "page": sample.name,
                    "path": sample.path,
                    "status": first.status_code,
                    "bytes": len(first.content),
                    "p50_ms": round(statistics.median(times), 1),
                    "p95_ms": round(times[max(0, int(len(times) * 0.95) - 1)], 1),
                    "max_ms": round(times[-1], 1),
                    "download": sample.download,
                }
            )
        cpu = time.process_time() - cpu_started
    engine.dispose()
    print(
        f"Customer pages on SQLite with the demo data: {repeat} requests per page after one "
        f"warm-up, server time (ASGI call), {platform.python_implementation()} "
        f"{platform.python_version()}, {os.cpu_count()} CPUs; CPU time of the timed part "
        f"{cpu:.1f} s."
    )
    print(f"{'page':32} {'status':>6} {'bytes':>8} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}  over")
    for row in results:
        over = "yes" if float(str(row["p95_ms"])) > TARGET_MS else ""
        if row["download"]:
            over = "(a file)"
        print(
            f"{row['page']:32} {row['status']:>6} {row['bytes']:>8} {row['p50_ms']:>8} "
            f"{row['p95_ms']:>8} {row['max_ms']:>8}  {over}"
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    results = asyncio.run(run(args.repeat))
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
