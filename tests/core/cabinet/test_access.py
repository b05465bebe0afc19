"""Sign-in codes and sessions of the customer's cabinet (`tolom.cabinet.access`): a code
is single-use, short-lived, bound to its challenge, kept only as an HMAC; attempts and
resends are limited; a new code ends the older ones; simultaneous guesses cannot pass the
limit and one code opens one session."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from tests.factories import add_customer, new_inn, postgres_only
from tolom.cabinet import access
from tolom.cabinet.access import AccessError, Policy
from tolom.db.schema import cabinet_codes, cabinet_sessions

KEYS = [b"k" * 32]
POLICY = Policy(resend_seconds=0)
NOW = datetime(2026, 12, 3, 10, 0, tzinfo=UTC)


def ask(
    engine: Engine, inn: str, *, now: datetime = NOW, policy: Policy = POLICY, **kw: object
) -> access.Challenge:
    with engine.begin() as conn:
        return access.request_code(
            conn,
            inn=inn,
            channel=str(kw.get("channel", "email")),
            address=str(kw.get("address", "198.51.100.1")),
            secret_keys=KEYS,
            policy=policy,
            now=now,
        )


def enter(engine: Engine, token: str, code: str, *, now: datetime = NOW) -> access.SignIn:
    with engine.begin() as conn:
        return access.sign_in(
            conn, token=token, code=code, address=None, secret_keys=KEYS, policy=POLICY, now=now
        )


def other(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


def test_the_right_code_opens_one_session_once(engine: Engine) -> None:
    inn = add_customer(engine, email="a@example.kg")
    challenge = ask(engine, inn)
    assert challenge.code is not None and challenge.recipient == "a@example.kg"
    opened = enter(engine, challenge.token, challenge.code)
    assert opened.session_token is not None
    with engine.connect() as conn:
        session = access.session(conn, opened.session_token, now=NOW)
    assert session is not None and session.customer.inn == inn
    again = enter(engine, challenge.token, challenge.code)
    assert again.refusal is not None and again.refusal.code == "expired"


def test_a_code_is_bound_to_its_challenge_and_ends_in_time(engine: Engine) -> None:
    first = add_customer(engine, email="a@example.kg")
    second = add_customer(engine, email="b@example.kg")
    one, two = ask(engine, first), ask(engine, second)
    assert one.code is not None and two.code is not None
    if one.code != two.code:
        refused = enter(engine, one.token, two.code).refusal
        assert refused is not None and refused.code == "wrong"
    late = NOW + timedelta(minutes=POLICY.code_minutes, seconds=1)
    refused = enter(engine, two.token, two.code, now=late).refusal
    assert refused is not None and refused.code == "expired"


def test_a_new_code_ends_the_earlier_ones(engine: Engine) -> None:
    inn = add_customer(engine, email="a@example.kg")
    old = ask(engine, inn)
    ask(engine, inn, now=NOW + timedelta(seconds=1))
    assert old.code is not None
    refused = enter(engine, old.token, old.code, now=NOW + timedelta(seconds=2)).refusal
    assert refused is not None and refused.code == "expired"


def test_nothing_is_sent_for_an_unknown_inn_or_a_missing_contact(engine: Engine) -> None:
    inn = add_customer(engine, email="a@example.kg")
    for challenge in (ask(engine, new_inn()), ask(engine, inn, channel="sms")):
        assert challenge.code is None and challenge.recipient is None
        refused = enter(engine, challenge.token, "123456").refusal
        assert refused is not None and refused.code == "wrong"
    with engine.connect() as conn:
        hashes = conn.execute(select(cabinet_codes.c.code_hash)).scalars().all()
    assert hashes == [None, None]


def test_the_code_is_stored_as_an_hmac_only(engine: Engine) -> None:
    inn = add_customer(engine, email="a@example.kg")
    challenge = ask(engine, inn)
    with engine.connect() as conn:
        row = conn.execute(select(cabinet_codes)).one()
    assert challenge.code is not None
    assert challenge.code not in row.code_hash and challenge.token not in row.token_hash
    assert len(row.code_hash) == 64


def test_resends_and_hourly_limits(engine: Engine) -> None:
    inn = add_customer(engine, email="a@example.kg")
    policy = Policy(resend_seconds=60, per_inn_hour=2, per_address_hour=3)
    ask(engine, inn, policy=policy)
    with pytest.raises(AccessError) as wait:
        ask(engine, inn, policy=policy, now=NOW + timedelta(seconds=20))
    assert wait.value.code == "wait" and wait.value.retry_after == 40
    ask(engine, inn, policy=policy, now=NOW + timedelta(seconds=61))
    with pytest.raises(AccessError) as limited:
        ask(engine, inn, policy=policy, now=NOW + timedelta(seconds=200))
    assert limited.value.code == "rate_limit"
    ask(engine, new_inn(), policy=policy, now=NOW + timedelta(seconds=201))
    with pytest.raises(AccessError) as by_address:
        ask(engine, new_inn(), policy=policy, now=NOW + timedelta(seconds=202))
    assert by_address.value.code == "rate_limit"
    # An hour later the INN may have codes again.
    ask(engine, inn, policy=policy, now=NOW + timedelta(hours=1, seconds=62), address="x")


def test_malformed_input_is_refused_before_anything_is_written(engine: Engine) -> None:
    for inn, channel in (("123", "email"), ("0" * 14 + "x", "email"), (new_inn(), "fax")):
        with pytest.raises(AccessError):
            ask(engine, inn, channel=channel)
    inn = add_customer(engine, email="a@example.kg")
    challenge = ask(engine, inn)
    for typed in ("", "12345", "1234567", "12a456", "١٢٣٤٥٦"):
        refused = enter(engine, challenge.token, typed).refusal
        assert refused is not None and refused.code == "format"
    with engine.connect() as conn:
        assert conn.execute(select(cabinet_codes.c.attempts)).scalar_one() == 0


@postgres_only
def test_simultaneous_guesses_cannot_pass_the_attempt_limit(engine: Engine) -> None:
    inn = add_customer(engine, email="a@example.kg")
    challenge = ask(engine, inn)
    assert challenge.code is not None
    wrong = other(challenge.code)
    barrier = threading.Barrier(12)
    results: list[str] = []

    def guess() -> None:
        barrier.wait()
        refused = enter(engine, challenge.token, wrong).refusal
        results.append(refused.code if refused else "opened")

    threads = [threading.Thread(target=guess) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count("wrong") == POLICY.attempts - 1
    assert results.count("expired") == 12 - (POLICY.attempts - 1)
    with engine.connect() as conn:
        assert conn.execute(select(cabinet_codes.c.attempts)).scalar_one() == POLICY.attempts


@postgres_only
def test_one_code_sent_twice_at_once_opens_one_session(engine: Engine) -> None:
    inn = add_customer(engine, email="a@example.kg")
    challenge = ask(engine, inn)
    assert challenge.code is not None
    barrier = threading.Barrier(8)
    opened: list[bool] = []

    def send() -> None:
        barrier.wait()
        opened.append(
            enter(engine, challenge.token, challenge.code or "").session_token is not None
        )

    threads = [threading.Thread(target=send) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert opened.count(True) == 1
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(cabinet_sessions)).scalar_one() == 1
