"""PostgreSQL: a batch of gateway top-ups in one server-side call, and the outbox's emit.

`tolom_pay_sochi` takes a batch of `sochi` pays (arrays, one element per pay) and, for
each, finds the earlier payment under the same (agent, txn_id) or the customer, decides,
and writes what `payments.service.pay` writes: the payment, its journal entry and posting,
both balance rows, the `payment.accepted` event and its deliveries. It returns one row per
pay with the outcome (its message is worded in Python) and, when the customer has reports
awaiting payment, `awaiting = true` so that the caller settles them in the same
transaction. Every balance row the batch touches is locked first, in (account, slot)
order, so concurrent batches cannot deadlock.

`tolom_emit` writes an event and its deliveries (subscribed webhook endpoints, and the
customer's e-mail and phone when `notify`); `events.outbox.emit` calls it on PostgreSQL.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 19:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

EMIT = """
CREATE OR REPLACE FUNCTION tolom_emit(
    p_type text, p_key text, p_customer bigint, p_payload text, p_notify boolean
) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    v_event bigint;
BEGIN
    INSERT INTO events (type, ordering_key, customer_id, payload)
    VALUES (p_type, p_key, p_customer, p_payload)
    RETURNING id INTO v_event;
    INSERT INTO deliveries (event_id, ordering_key, destination, endpoint_id, recipient, language)
    SELECT v_event, p_key, 'webhook:' || w.id, w.id, NULL, NULL
      FROM webhook_endpoints w
     WHERE w.enabled
       AND (w.event_types = '*' OR (' ' || w.event_types || ' ') LIKE ('% ' || p_type || ' %'))
    UNION ALL
    SELECT v_event, p_key, 'email', NULL, c.email, c.language
      FROM customers c
     WHERE p_notify AND c.id = p_customer AND c.email IS NOT NULL
    UNION ALL
    SELECT v_event, p_key, 'sms', NULL, c.phone, c.language
      FROM customers c
     WHERE p_notify AND c.id = p_customer AND c.phone IS NOT NULL;
    RETURN v_event;
END $$
"""

PAY_SOCHI = """
CREATE OR REPLACE FUNCTION tolom_pay_sochi(
    p_agent bigint[],
    p_agent_code text[],
    p_clearing bigint[],
    p_slots integer[],
    p_txn_id text[],
    p_account text[],
    p_amount bigint[],
    p_min bigint[],
    p_max bigint[],
    p_txn_date_raw text[],
    p_txn_date timestamptz[],
    p_business_date date[],
    p_description text[],
    p_notify boolean
) RETURNS TABLE (
    item integer,
    outcome text,
    payment_id bigint,
    amount bigint,
    status text,
    txn_date timestamptz,
    business_date date,
    created_at timestamptz,
    replayed boolean,
    customer_id bigint,
    account_id bigint,
    awaiting boolean,
    limit_amount bigint
) LANGUAGE plpgsql SET timezone = 'UTC' AS $$
#variable_conflict use_column
DECLARE
    n integer := coalesce(array_length(p_txn_id, 1), 0);
    i integer;
    found_payment record;
    found_customer record;
    todo boolean[] := array_fill(false, ARRAY[n]);
    repeat boolean[] := array_fill(false, ARRAY[n]);
    customer bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    credit bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    customer_name text[] := array_fill(NULL::text, ARRAY[n]);
    receipt bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    slot_of bigint[] := array_fill(NULL::bigint, ARRAY[n]);
    lock_account bigint[] := '{}';
    lock_slot integer[] := '{}';
    v_payment bigint;
    v_entry bigint;
    v_created timestamptz;
    v_balance bigint;
    -- Looked up once per call, not once per pay.
    payment_ids regclass := pg_get_serial_sequence('payments', 'id')::regclass;
    entry_ids regclass := pg_get_serial_sequence('journal_entries', 'id')::regclass;
BEGIN
    -- 1. Decide every pay from what is already there; nothing is locked yet.
    FOR i IN 1..n LOOP
        IF EXISTS (SELECT 1 FROM payments p
                    WHERE p.agent_id = p_agent[i] AND p.txn_id = p_txn_id[i]) THEN
            repeat[i] := true;  -- answered in step 4
            CONTINUE;
        END IF;
        SELECT c.id, c.name, c.status, c.account_id INTO found_customer
          FROM customers c WHERE c.inn = p_account[i];
        IF NOT FOUND OR found_customer.status <> 'active'
           OR p_amount[i] < p_min[i] OR p_amount[i] > p_max[i] THEN
            RETURN QUERY SELECT i,
                CASE WHEN found_customer IS NULL OR found_customer.id IS NULL THEN 'not_found'
                     WHEN found_customer.status <> 'active' THEN 'inactive'
                     WHEN p_amount[i] < p_min[i] THEN 'too_small'
                     ELSE 'too_large' END,
                NULL::bigint, NULL::bigint, NULL::text, NULL::timestamptz, NULL::date,
                NULL::timestamptz, false, NULL::bigint, NULL::bigint, false,
                CASE WHEN p_amount[i] < p_min[i] THEN p_min[i] ELSE p_max[i] END;
            CONTINUE;
        END IF;
        todo[i] := true;
        customer[i] := found_customer.id;
        credit[i] := found_customer.account_id;
        customer_name[i] := found_customer.name;
        -- The receipt number is taken now: like everywhere, it picks the clearing slot.
        receipt[i] := nextval(payment_ids);
        slot_of[i] := receipt[i] % p_slots[i];
        lock_account := lock_account || p_clearing[i] || found_customer.account_id;
        lock_slot := lock_slot || slot_of[i]::integer || 0;
    END LOOP;

    -- 2. Lock every balance row the batch will change, in one global order.
    PERFORM 1
       FROM account_balances b
       JOIN unnest(lock_account, lock_slot) AS l(account_id, slot)
         ON b.account_id = l.account_id AND b.slot = l.slot
      ORDER BY b.account_id, b.slot
        FOR UPDATE OF b;

    -- 3. Write.
    FOR i IN 1..n LOOP
        CONTINUE WHEN NOT todo[i];
        WITH entry AS (
            SELECT nextval(entry_ids) AS id
        ), paid AS (
            INSERT INTO payments AS p (id, agent_id, txn_id, service, account, amount,
                                       customer_id, entry_id, txn_date_raw, txn_date,
                                       business_date)
            SELECT receipt[i], p_agent[i], p_txn_id[i], 'sochi', p_account[i], p_amount[i],
                   customer[i],
                   entry.id, left(p_txn_date_raw[i], 40), p_txn_date[i], p_business_date[i]
              FROM entry
            ON CONFLICT (agent_id, txn_id) DO NOTHING
            RETURNING p.id, p.entry_id, p.created_at
        ), journal AS (
            INSERT INTO journal_entries (id, kind, description)
            SELECT paid.entry_id, 'payment', p_description[i] FROM paid
        )
        SELECT paid.id, paid.entry_id, paid.created_at INTO v_payment, v_entry, v_created
          FROM paid;
        IF NOT FOUND THEN
            -- A twin committed after step 1 (we waited for it on the unique index).
            repeat[i] := true;
            CONTINUE;
        END IF;
        INSERT INTO postings (entry_id, debit_account_id, credit_account_id, amount)
        VALUES (v_entry, p_clearing[i], credit[i], p_amount[i]);
        UPDATE account_balances SET balance = balance - p_amount[i]
         WHERE account_balances.account_id = p_clearing[i] AND slot = slot_of[i];
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no balance row % of account %', slot_of[i], p_clearing[i];
        END IF;
        UPDATE account_balances SET balance = balance + p_amount[i]
         WHERE account_balances.account_id = credit[i] AND slot = 0
        RETURNING balance INTO v_balance;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'no balance row 0 of account %', credit[i];
        END IF;
        PERFORM tolom_emit(
            'payment.accepted',
            'customer:' || customer[i],
            customer[i],
            jsonb_build_object(
                'payment_id', v_payment,
                'service', 'sochi',
                'account', p_account[i],
                'amount', p_amount[i],
                'agent', p_agent_code[i],
                'txn_id', p_txn_id[i],
                'business_date', p_business_date[i],
                'created_at', v_created,
                'inn', p_account[i],
                'customer_name', customer_name[i],
                'invoice_number', NULL,
                'balance', v_balance
            )::text,
            p_notify
        );
        RETURN QUERY SELECT i, 'ok', v_payment, p_amount[i], 'accepted'::text, p_txn_date[i],
            p_business_date[i], v_created, false, customer[i], credit[i],
            EXISTS (SELECT 1 FROM charges ch
                     WHERE ch.customer_id = customer[i] AND ch.status = 'awaiting_payment'),
            v_balance;
    END LOOP;

    -- 4. Repeats: the original answer, or a conflict when anything differs.
    FOR i IN 1..n LOOP
        CONTINUE WHEN NOT repeat[i];
        SELECT p.id, p.service, p.account, p.amount, p.status, p.txn_date, p.business_date,
               p.created_at
          INTO found_payment
          FROM payments p
         WHERE p.agent_id = p_agent[i] AND p.txn_id = p_txn_id[i];
        IF found_payment.service = 'sochi' AND found_payment.account = p_account[i]
           AND found_payment.amount = p_amount[i] THEN
            RETURN QUERY SELECT i, 'ok', found_payment.id, found_payment.amount,
                found_payment.status::text, found_payment.txn_date,
                found_payment.business_date, found_payment.created_at, true,
                NULL::bigint, NULL::bigint, false, NULL::bigint;
        ELSE
            RETURN QUERY SELECT i, 'conflict', NULL::bigint, NULL::bigint, NULL::text,
                NULL::timestamptz, NULL::date, NULL::timestamptz, false, NULL::bigint,
                NULL::bigint, false, NULL::bigint;
        END IF;
    END LOOP;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite runs the same use case in Python (payments.service)
    op.execute(EMIT)
    op.execute(PAY_SOCHI)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "DROP FUNCTION tolom_pay_sochi(bigint[], text[], bigint[], integer[], text[], text[], "
        "bigint[], bigint[], bigint[], text[], timestamptz[], date[], text[], boolean)"
    )
    op.execute("DROP FUNCTION tolom_emit(text, text, bigint, text, boolean)")
