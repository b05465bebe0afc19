"""A seeded random simulation (in the spirit of TigerBeetle's VOPR): random sequences of
check, pay, repeat, conflicting repeat, block and invoice operations through the OSMP
gateway, with the ledger invariants and a model of every balance asserted after each step."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import hypothesis.strategies as st
from hypothesis import HealthCheck, settings
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import func, select

from tests.factories import Gateway, add_customer, add_invoice
from tolom.billing import customers, invoices
from tolom.db.schema import payments
from tolom.ledger.verify import verify_ledger
from tolom.money import format_amount

MIN, MAX = 100, 50_000_000  # the sochi service's default limits, in tyiyn
_machines = itertools.count()

amounts = st.one_of(
    st.integers(min_value=0, max_value=MAX + 1000),
    st.sampled_from([0, 1, MIN - 1, MIN, MIN + 1, MAX - 1, MAX, MAX + 1]),
)


def spell(tyiyn: int, short: bool) -> str:
    """An amount as an agent might send it: "500", "500.5" or "500.50"."""
    text = format_amount(tyiyn)
    if short and text.endswith(".00"):
        return text[:-3]
    if short and text.endswith("0"):
        return text[:-1]
    return text


@dataclass
class Sent:
    """A pay we sent and what it answered, to repeat it later."""

    service: str
    account: str
    amount: int
    txn_id: str
    answer: dict


def make_machine(app, engine):  # type: ignore[no-untyped-def]
    class GatewaySimulation(RuleBasedStateMachine):
        customers = Bundle("customers")
        invoices = Bundle("invoices")
        pays = Bundle("pays")

        def __init__(self) -> None:
            super().__init__()
            self.gateway = Gateway.create(app, engine, code=f"sim{next(_machines)}")
            self.agent_id = self._agent_id()
            self.balances: dict[str, int] = {}
            self.blocked: set[str] = set()
            self.invoice_state: dict[str, tuple[int, str]] = {}  # number -> (total, status)
            self.txn_ids = itertools.count(1)
            self.accepted = 0

        def next_txn(self) -> str:
            return str(next(self.txn_ids))

        @rule(target=customers)
        def add_customer(self) -> str:
            inn = add_customer(engine)
            self.balances[inn] = 0
            return inn

        @rule(
            target=invoices,
            items=st.lists(
                st.sampled_from(["eds-head", "eds-accountant", "eds-rutoken"]),
                min_size=1,
                max_size=3,
            ),
        )
        def add_invoice(self, items: list[str]) -> str:
            invoice = add_invoice(engine, [(code, 1) for code in items])
            self.invoice_state[invoice.number] = (invoice.total, "open")
            return invoice.number

        @rule(inn=customers)
        def toggle_block(self, inn: str) -> None:
            status = "active" if inn in self.blocked else "blocked"
            with engine.begin() as conn:
                customers.set_status(conn, inn, status)
            self.blocked.symmetric_difference_update({inn})

        @rule(number=invoices)
        def cancel_invoice(self, number: str) -> None:
            total, status = self.invoice_state[number]
            if status == "open":
                with engine.begin() as conn:
                    invoices.cancel(conn, number)
                self.invoice_state[number] = (total, "cancelled")

        @rule(inn=customers)
        def check_customer(self, inn: str) -> None:
            answer = self.gateway.check("sochi", inn)
            assert answer["result"] == (79 if inn in self.blocked else 0)

        @rule(number=invoices)
        def check_invoice(self, number: str) -> None:
            total, status = self.invoice_state[number]
            answer = self.gateway.check("eds", number)
            assert answer["result"] == {"open": 0, "paid": 7, "cancelled": 79}[status]
            if status == "open":
                assert answer["fields"]["amount"] == format_amount(total)

        @rule(target=pays, inn=customers, amount=amounts, short=st.booleans())
        def pay_customer(self, inn: str, amount: int, short: bool) -> Sent:
            txn_id = self.next_txn()
            answer = self.gateway.pay("sochi", inn, spell(amount, short), txn_id=txn_id)
            if inn in self.blocked:
                expected = 79
            elif amount < MIN:
                expected = 241
            elif amount > MAX:
                expected = 242
            else:
                expected = 0
            assert answer["result"] == expected, answer
            if expected == 0:
                assert answer["sum"] == format_amount(amount)
                self.balances[inn] += amount
                self.accepted += 1
            return Sent("sochi", inn, amount, txn_id, answer)

        @rule(target=pays, number=invoices, delta=st.sampled_from([0, 0, 0, -1, 1, -100000]))
        def pay_invoice(self, number: str, delta: int) -> Sent:
            total, status = self.invoice_state[number]
            amount = max(total + delta, 0)
            txn_id = self.next_txn()
            answer = self.gateway.pay("eds", number, format_amount(amount), txn_id=txn_id)
            if status == "cancelled":
                expected = 79
            elif status == "paid":
                expected = 7
            elif amount < total:
                expected = 241
            elif amount > total:
                expected = 242
            else:
                expected = 0
            assert answer["result"] == expected, (answer, status, amount, total)
            if expected == 0:
                self.invoice_state[number] = (total, "paid")
                self.accepted += 1
            return Sent("eds", number, amount, txn_id, answer)

        @rule(sent=pays)
        def repeat(self, sent: Sent) -> None:
            answer = self.gateway.pay(
                sent.service, sent.account, format_amount(sent.amount), txn_id=sent.txn_id
            )
            if sent.answer["result"] == 0:
                assert answer == sent.answer  # the original answer, whatever changed since
            else:
                assert answer["result"] != 0 or self._became_payable(sent)
                if answer["result"] == 0:
                    self._count_late_success(sent, answer)

        @rule(sent=pays, other=customers, bump=st.integers(min_value=1, max_value=1000))
        def conflicting_repeat(self, sent: Sent, other: str, bump: int) -> None:
            if sent.answer["result"] != 0:
                return
            if other == sent.account and sent.service == "sochi":
                answer = self.gateway.pay(
                    sent.service,
                    sent.account,
                    format_amount(sent.amount + bump),
                    txn_id=sent.txn_id,
                )
            else:
                answer = self.gateway.pay(
                    "sochi", other, format_amount(sent.amount), txn_id=sent.txn_id
                )
            assert answer["result"] == 300

        def _became_payable(self, sent: Sent) -> bool:
            """A refused pay may succeed when repeated after the refusal's cause went away."""
            if sent.service == "sochi":
                return sent.account not in self.blocked and MIN <= sent.amount <= MAX
            total, status = self.invoice_state[sent.account]
            return status == "open" and sent.amount == total

        def _count_late_success(self, sent: Sent, answer: dict) -> None:
            sent.answer = answer
            self.accepted += 1
            if sent.service == "sochi":
                self.balances[sent.account] += sent.amount
            else:
                total, _ = self.invoice_state[sent.account]
                self.invoice_state[sent.account] = (total, "paid")

        @invariant()
        def ledger_balances(self) -> None:
            with engine.connect() as conn:
                assert verify_ledger(conn) == []
                for inn, expected in self.balances.items():
                    customer = customers.get(conn, inn)
                    assert customers.balance(conn, customer) == expected
                count = conn.execute(
                    select(func.count())
                    .select_from(payments)
                    .where(payments.c.agent_id == self.agent_id)
                ).scalar_one()
                assert count == self.accepted

        def _agent_id(self) -> int:
            from tolom.agents.service import load

            with engine.connect() as conn:
                agent = load(conn, self.gateway.code)
            assert agent is not None
            return agent.id

    return GatewaySimulation


def test_random_sequences_keep_the_ledger_and_the_model_in_step(app, engine) -> None:
    machine = make_machine(app, engine)
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
            derandomize=True,  # CI is reproducible; run with a seed locally to explore more
        ),
    )
