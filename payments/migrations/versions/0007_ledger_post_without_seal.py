"""ledger_post(p_now, p_batch, p_seal): a batch job may leave sealing until it commits

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 16:30:00.000000

`ledger_post` sealed the queue on every call whose caller could take the chain head. A
settlement import posts a file's lines in chunks inside one transaction: each call's seal
scanned the queue's index past every row the import had queued and dequeued before, rows that
stay in the index until the transaction ends, so a million-line file spent most of its time
there. The function gains `p_seal`; the import passes false and seals after it commits, a
bounded batch per transaction. Every other caller passes true, as before.
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

POST = """
CREATE FUNCTION ledger_post(
    p_now timestamptz, p_batch json, p_seal boolean,
    OUT transaction_ids integer[], OUT account_ids integer[], OUT kinds text[],
    OUT floors bigint[], OUT debits bigint[], OUT credits bigint[]
) LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    codes text[];
    currencies text[];
    new_kinds text[];
    new_floors bigint[];
    added_debits bigint[];
    added_credits bigint[];
    account_code text;
    account_currency text;
    debit bigint;
    credit bigint;
    found_id integer;
    found_kind text;
    found_floor bigint;
    old_debits bigint;
    old_credits bigint;
BEGIN
    WITH given AS (
        SELECT * FROM ROWS FROM (json_to_recordset(p_batch -> 'journal') AS (
            external_id text, description text, effective_at timestamptz, metadata json,
            reverses_id integer, content_hash text)) WITH ORDINALITY AS r
    ), new AS (
        INSERT INTO ledger_transactions
            (external_id, description, effective_at, created_at, metadata, reverses_id,
             content_hash)
        SELECT external_id, description, effective_at, p_now, metadata, reverses_id,
               content_hash
        FROM given ORDER BY ordinality
        ON CONFLICT (external_id) DO NOTHING
        RETURNING id, external_id
    ), queued AS (
        INSERT INTO ledger_unsealed (transaction_id) SELECT id FROM new
    )
    SELECT array_agg(new.id ORDER BY given.ordinality) INTO transaction_ids
    FROM given LEFT JOIN new USING (external_id);

    IF cardinality(array_remove(transaction_ids, NULL)) = 0 THEN
        RETURN;  -- all posted before: the caller compares them with what it asked
    END IF;

    -- Seal now if no one else is sealing; this statement's lock lets the next one see every
    -- seal committed before it. A batch job posting many times in one transaction passes
    -- p_seal = false and seals after it commits: sealing inside it would hold the head for
    -- the whole job and, as its own deletions from the queue stay visible to its index scans
    -- until it commits, scan every earlier chunk's queue rows again on each call.
    IF p_seal THEN
        PERFORM FROM ledger_chain_head WHERE id = 1 FOR UPDATE SKIP LOCKED;
        IF FOUND THEN
            PERFORM ledger_seal(1000);
        END IF;
    END IF;

    -- Each account, with what the new transactions add to it.
    SELECT array_agg(a.code ORDER BY a.n), array_agg(a.currency ORDER BY a.n),
           array_agg(a.kind ORDER BY a.n), array_agg(a.floor ORDER BY a.n),
           array_agg(coalesce(s.debits, 0) ORDER BY a.n),
           array_agg(coalesce(s.credits, 0) ORDER BY a.n)
    INTO codes, currencies, new_kinds, new_floors, added_debits, added_credits
    FROM ROWS FROM (json_to_recordset(p_batch -> 'accounts') AS (
        code text, currency text, kind text, floor bigint)) WITH ORDINALITY
        AS a(code, currency, kind, floor, n)
    LEFT JOIN (
        SELECT p.account,
               sum(p.amount_minor) FILTER (WHERE p.direction = 'debit') AS debits,
               sum(p.amount_minor) FILTER (WHERE p.direction = 'credit') AS credits
        FROM json_to_recordset(p_batch -> 'postings')
            AS p(journal integer, account integer, direction text, amount_minor bigint)
        JOIN unnest(transaction_ids) WITH ORDINALITY AS t(id, n) ON t.n = p.journal
        WHERE t.id IS NOT NULL
        GROUP BY p.account
    ) AS s ON s.account = a.n;

    -- One slot per account, in the caller's order; an account only repeats touch stays NULL.
    account_ids := array_fill(NULL::integer, ARRAY[cardinality(codes)]);
    kinds := array_fill(NULL::text, ARRAY[cardinality(codes)]);
    floors := array_fill(NULL::bigint, ARRAY[cardinality(codes)]);
    debits := array_fill(NULL::bigint, ARRAY[cardinality(codes)]);
    credits := array_fill(NULL::bigint, ARRAY[cardinality(codes)]);

    -- In the caller's order (sorted by code and currency), so that postings never deadlock:
    -- the UPDATE locks the account; a missing one is created, then locked the same way.
    FOR k IN 1 .. cardinality(codes) LOOP
        -- Scalars, not array elements, in the statements: an array parameter would be
        -- flattened for every statement, a cost that grows with the batch.
        account_code := codes[k];
        account_currency := currencies[k];
        debit := added_debits[k];
        credit := added_credits[k];
        CONTINUE WHEN debit = 0 AND credit = 0;
        LOOP
            UPDATE ledger_accounts
            SET debits_minor = debits_minor + debit, credits_minor = credits_minor + credit
            WHERE code = account_code AND currency = account_currency
            RETURNING id, kind, min_balance_minor, debits_minor - debit, credits_minor - credit
            INTO found_id, found_kind, found_floor, old_debits, old_credits;
            EXIT WHEN FOUND;
            INSERT INTO ledger_accounts
                (code, currency, kind, min_balance_minor, debits_minor, credits_minor,
                 created_at)
            VALUES (account_code, account_currency, new_kinds[k], new_floors[k], 0, 0, p_now)
            ON CONFLICT (code, currency) DO NOTHING;
        END LOOP;
        account_ids[k] := found_id;
        kinds[k] := found_kind;
        floors[k] := found_floor;
        debits[k] := old_debits;
        credits[k] := old_credits;
    END LOOP;

    INSERT INTO ledger_postings (transaction_id, account_id, direction, amount_minor)
    SELECT t.id, a.id, p.direction, p.amount_minor
    FROM ROWS FROM (json_to_recordset(p_batch -> 'postings') AS (
        journal integer, account integer, direction text, amount_minor bigint)) WITH ORDINALITY
        AS p(journal, account, direction, amount_minor, n)
    JOIN unnest(transaction_ids) WITH ORDINALITY AS t(id, n) ON t.n = p.journal
    JOIN unnest(account_ids) WITH ORDINALITY AS a(id, n) ON a.n = p.account
    WHERE t.id IS NOT NULL
    ORDER BY p.n;
END $$
"""

POST_0003 = """
CREATE FUNCTION ledger_post(
    p_now timestamptz, p_batch json,
    OUT transaction_ids integer[], OUT account_ids integer[], OUT kinds text[],
    OUT floors bigint[], OUT debits bigint[], OUT credits bigint[]
) LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    codes text[];
    currencies text[];
    new_kinds text[];
    new_floors bigint[];
    added_debits bigint[];
    added_credits bigint[];
    account_code text;
    account_currency text;
    debit bigint;
    credit bigint;
    found_id integer;
    found_kind text;
    found_floor bigint;
    old_debits bigint;
    old_credits bigint;
BEGIN
    WITH given AS (
        SELECT * FROM ROWS FROM (json_to_recordset(p_batch -> 'journal') AS (
            external_id text, description text, effective_at timestamptz, metadata json,
            reverses_id integer, content_hash text)) WITH ORDINALITY AS r
    ), new AS (
        INSERT INTO ledger_transactions
            (external_id, description, effective_at, created_at, metadata, reverses_id,
             content_hash)
        SELECT external_id, description, effective_at, p_now, metadata, reverses_id,
               content_hash
        FROM given ORDER BY ordinality
        ON CONFLICT (external_id) DO NOTHING
        RETURNING id, external_id
    ), queued AS (
        INSERT INTO ledger_unsealed (transaction_id) SELECT id FROM new
    )
    SELECT array_agg(new.id ORDER BY given.ordinality) INTO transaction_ids
    FROM given LEFT JOIN new USING (external_id);

    IF cardinality(array_remove(transaction_ids, NULL)) = 0 THEN
        RETURN;  -- all posted before: the caller compares them with what it asked
    END IF;

    -- Seal now if no one else is sealing; this statement's lock lets the next one see every
    -- seal committed before it.
    PERFORM FROM ledger_chain_head WHERE id = 1 FOR UPDATE SKIP LOCKED;
    IF FOUND THEN
        PERFORM ledger_seal(1000);
    END IF;

    -- Each account, with what the new transactions add to it.
    SELECT array_agg(a.code ORDER BY a.n), array_agg(a.currency ORDER BY a.n),
           array_agg(a.kind ORDER BY a.n), array_agg(a.floor ORDER BY a.n),
           array_agg(coalesce(s.debits, 0) ORDER BY a.n),
           array_agg(coalesce(s.credits, 0) ORDER BY a.n)
    INTO codes, currencies, new_kinds, new_floors, added_debits, added_credits
    FROM ROWS FROM (json_to_recordset(p_batch -> 'accounts') AS (
        code text, currency text, kind text, floor bigint)) WITH ORDINALITY
        AS a(code, currency, kind, floor, n)
    LEFT JOIN (
        SELECT p.account,
               sum(p.amount_minor) FILTER (WHERE p.direction = 'debit') AS debits,
               sum(p.amount_minor) FILTER (WHERE p.direction = 'credit') AS credits
        FROM json_to_recordset(p_batch -> 'postings')
            AS p(journal integer, account integer, direction text, amount_minor bigint)
        JOIN unnest(transaction_ids) WITH ORDINALITY AS t(id, n) ON t.n = p.journal
        WHERE t.id IS NOT NULL
        GROUP BY p.account
    ) AS s ON s.account = a.n;

    -- One slot per account, in the caller's order; an account only repeats touch stays NULL.
    account_ids := array_fill(NULL::integer, ARRAY[cardinality(codes)]);
    kinds := array_fill(NULL::text, ARRAY[cardinality(codes)]);
    floors := array_fill(NULL::bigint, ARRAY[cardinality(codes)]);
    debits := array_fill(NULL::bigint, ARRAY[cardinality(codes)]);
    credits := array_fill(NULL::bigint, ARRAY[cardinality(codes)]);

    -- In the caller's order (sorted by code and currency), so that postings never deadlock:
    -- the UPDATE locks the account; a missing one is created, then locked the same way.
    FOR k IN 1 .. cardinality(codes) LOOP
        -- Scalars, not array elements, in the statements: an array parameter would be
        -- flattened for every statement, a cost that grows with the batch.
        account_code := codes[k];
        account_currency := currencies[k];
        debit := added_debits[k];
        credit := added_credits[k];
        CONTINUE WHEN debit = 0 AND credit = 0;
        LOOP
            UPDATE ledger_accounts
            SET debits_minor = debits_minor + debit, credits_minor = credits_minor + credit
            WHERE code = account_code AND currency = account_currency
            RETURNING id, kind, min_balance_minor, debits_minor - debit, credits_minor - credit
            INTO found_id, found_kind, found_floor, old_debits, old_credits;
            EXIT WHEN FOUND;
            INSERT INTO ledger_accounts
                (code, currency, kind, min_balance_minor, debits_minor, credits_minor,
                 created_at)
            VALUES (account_code, account_currency, new_kinds[k], new_floors[k], 0, 0, p_now)
            ON CONFLICT (code, currency) DO NOTHING;
        END LOOP;
        account_ids[k] := found_id;
        kinds[k] := found_kind;
        floors[k] := found_floor;
        debits[k] := old_debits;
        credits[k] := old_credits;
    END LOOP;

    INSERT INTO ledger_postings (transaction_id, account_id, direction, amount_minor)
    SELECT t.id, a.id, p.direction, p.amount_minor
    FROM ROWS FROM (json_to_recordset(p_batch -> 'postings') AS (
        journal integer, account integer, direction text, amount_minor bigint)) WITH ORDINALITY
        AS p(journal, account, direction, amount_minor, n)
    JOIN unnest(transaction_ids) WITH ORDINALITY AS t(id, n) ON t.n = p.journal
    JOIN unnest(account_ids) WITH ORDINALITY AS a(id, n) ON a.n = p.account
    WHERE t.id IS NOT NULL
    ORDER BY p.n;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_post(timestamptz, json)")
        op.execute(POST)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION ledger_post(timestamptz, json, boolean)")
        op.execute(POST_0003)
