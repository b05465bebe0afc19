"""The wallet simulator in a real browser: an operator plays the «Оптима 24» journey (an
invoice) and the MegaPay journey (a СОЧИ top-up, saved to the favourites) on the phone
screen; each ends in a receipt whose prv_txn is a sandbox payment, and no real payment is
made. Screenshots of every screen land in test-artifacts/screenshots/<test>/.

Page contract: `section.phone[data-screen]`, `form#optima-account`, `form#optima-pay`,
`form#megapay-pay`, `#receipt`, `#receipt-prv`, `#check-name`, `li.sim-exchange`.
"""

from __future__ import annotations

from playwright.sync_api import Page, expect
from sqlalchemy import func, select

from tests.adapters.web.browser.conftest import LiveServer, Shots
from tests.adapters.web.browser.test_journeys import RU, log_in
from tolom.agents import service as agents
from tolom.db.schema import payments, sandbox_payments


def _sandbox_agent(live_server: LiveServer, code: str) -> None:
    with live_server.engine.begin() as conn:
        if agents.load(conn, code) is None:
            agents.create(
                conn,
                code=code,
                name="Песочница браузера",
                networks=["127.0.0.1"],
                service_codes=["sochi", "eds"],
                sandbox=True,
            )


def _real_payments(live_server: LiveServer) -> int:
    with live_server.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(payments)).scalar_one())


def _sandbox_payment(live_server: LiveServer, prv: str) -> tuple[str, int]:
    with live_server.engine.connect() as conn:
        row = conn.execute(
            select(sandbox_payments.c.account, sandbox_payments.c.amount).where(
                sandbox_payments.c.id == int(prv)
            )
        ).one()
    return str(row.account), int(row.amount)


def _open(page: Page, wallet: str) -> None:
    page.get_by_role("navigation", name=RU("nav.label")).get_by_role(
        "link", name=RU("nav.simulator")
    ).click()
    setup = page.locator("form#simulator-setup")
    setup.get_by_label(RU("simulator.agent")).select_option("sandbrowser")
    setup.get_by_label("MegaPay" if wallet == "megapay" else "Оптима 24").check()
    setup.get_by_role("button", name=RU("simulator.start")).click()
    expect(page.locator("section.phone")).to_have_attribute("data-screen", "home")


def test_operator_plays_the_optima_journey_for_an_invoice(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    _sandbox_agent(live_server, "sandbrowser")
    real_before = _real_payments(live_server)
    log_in(page, live_server.accounts["operator"])
    _open(page, "optima")
    phone = page.locator("section.phone")
    shot("home")
    phone.get_by_role("link", name="Платежи").click()
    shot("payments")
    phone.get_by_role("link", name="Платежи от дилеров/агентов").click()
    phone.get_by_role("link", name="Dos Tek Group").click()
    shot("dos-tek-group")
    form = page.locator("form#optima-account")
    form.get_by_label("ЭЦП — номер счёта на оплату").check()
    form.locator("input[name=account]").fill("9999900000000005")
    form.get_by_role("button", name="Далее").click()
    expect(phone).to_have_attribute("data-screen", "amount")
    expect(page.locator("#check-name")).to_have_text("Тестовый абонент")
    expect(page.locator("form#optima-pay").get_by_label("Сумма")).to_have_value("1500.00")
    expect(page.locator("li.sim-exchange[data-command=check]")).to_contain_text(
        "<result>0</result>"
    )
    shot("amount")
    page.locator("form#optima-pay").get_by_role("button", name="Оплатить").click()
    expect(phone).to_have_attribute("data-screen", "receipt")
    receipt = page.locator("#receipt")
    expect(receipt).to_contain_text("Чек об оплате")
    expect(page.locator("#receipt-sum")).to_have_text("1500.00 KGS")
    expect(page.locator("li.sim-exchange")).to_have_count(2)
    expect(page.locator("li.sim-exchange[data-command=pay]")).to_contain_text("Basic sandbrowser:")
    shot("receipt")
    prv = page.locator("#receipt-prv").inner_text()
    assert _sandbox_payment(live_server, prv) == ("9999900000000005", 150_000)
    assert _real_payments(live_server) == real_before


def test_operator_plays_the_megapay_journey_and_saves_a_favourite(
    page: Page, shot: Shots, live_server: LiveServer
) -> None:
    _sandbox_agent(live_server, "sandbrowser")
    real_before = _real_payments(live_server)
    log_in(page, live_server.accounts["operator"])
    _open(page, "megapay")
    phone = page.locator("section.phone")
    shot("home")
    phone.get_by_role("link", name="Оплата").click()
    phone.get_by_role("link", name="Другие").click()
    shot("others")
    phone.get_by_role("link", name="СОЧИ").click()
    form = page.locator("form#megapay-pay")
    form.get_by_label("Введите лицевой счет").fill("99999000000000")
    form.get_by_label("Сумма оплаты").fill("250.00")
    shot("service")
    form.get_by_role("button", name="ДОБАВИТЬ В ИЗБРАННОЕ").click()
    expect(page.locator("#simulator-notice")).to_have_text(RU("simulator.favourite.saved"))
    page.locator("form#megapay-pay").get_by_role("button", name="ОПЛАТИТЬ").click()
    expect(phone).to_have_attribute("data-screen", "receipt")
    expect(page.locator("#receipt-account")).to_have_text("99999000000000")
    expect(page.locator("li.sim-exchange")).to_have_count(2)
    shot("receipt")
    prv = page.locator("#receipt-prv").inner_text()
    assert _sandbox_payment(live_server, prv) == ("99999000000000", 25_000)
    phone.get_by_role("link", name="Готово").click()
    phone.get_by_role("link", name="Оплата").click()
    expect(page.locator("#favourites li[data-account='99999000000000']").first).to_be_visible()
    shot("favourites")
    assert _real_payments(live_server) == real_before
