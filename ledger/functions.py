"""The ledger's PostgreSQL functions, as the migrations install them: `ledger_post` writes a
batch of journal transactions in one call, `ledger_seal` appends queued ones to the hash chain.
Each version's SQL is written once, here; a migration names the version it installs. SQLite has
neither function: the ledger runs the same steps as plain statements there (`ledger.store`).

`ledger_post` writes the journal rows (a repeated external id is left alone and answered NULL),
their queue rows, a seal if the chain head is free (`FOR UPDATE SKIP LOCKED`) and `p_seal` asks
for one, then each account in the caller's sorted order, created if missing and locked by the
UPDATE that moves its totals, and last the postings. Every table access is by a unique key or
an insert, so no plan depends on the tables' statistics. It returns the new journal ids and
each account as it stood before, for the caller's kind and limit checks. `ledger_seal` reaches
rows only through keys and computes the links in a loop; its caller holds the chain head.
Neither lets the planner compile to machine code (`jit = off`): on these small statements that
costs far more than it saves.
"""

from __future__ import annotations

# Appends the queued transactions to the hash chain (since migration 0003).
SEAL = """
CREATE FUNCTION ledger_seal(p_limit integer) RETURNS integer LANGUAGE plpgsql SET jit = off AS $$
DECLARE
    head_seq bigint;
    head_hash text;
    ids integer[];
    digests text[];
    chained boolean[];
    link_seqs bigint[] := '{}';
    link_ids integer[] := '{}';
    link_hashes text[] := '{}';
    n integer := 0;
BEGIN
    SELECT seq, hash INTO head_seq, head_hash FROM ledger_chain_head WHERE id = 1;
    -- The LIMITs in the lateral subqueries keep them per-row primary key lookups.
    SELECT array_agg(q.transaction_id ORDER BY q.transaction_id),
           array_agg(t.content_hash ORDER BY q.transaction_id),
           array_agg(c.chained ORDER BY q.transaction_id)
    INTO ids, digests, chained
    FROM (SELECT transaction_id FROM ledger_unsealed ORDER BY transaction_id LIMIT p_limit) AS q
    CROSS JOIN LATERAL (
        SELECT content_hash FROM ledger_transactions WHERE id = q.transaction_id LIMIT 1
    ) AS t
    CROSS JOIN LATERAL (
        SELECT EXISTS (SELECT FROM ledger_chain WHERE transaction_id = q.transaction_id)
            AS chained LIMIT 1
    ) AS c;
    IF ids IS NULL THEN
        RETURN 0;
    END IF;
    FOR i IN 1 .. cardinality(ids) LOOP
        CONTINUE WHEN chained[i];  -- queued again out of band: only dequeued
        n := n + 1;
        head_seq := head_seq + 1;
        head_hash := encode(sha256(convert_to(head_hash || digests[i], 'UTF8')), 'hex');
        link_seqs[n] := head_seq;
        link_ids[n] := ids[i];
        link_hashes[n] := head_hash;
    END LOOP;
    DELETE FROM ledger_unsealed WHERE transaction_id = ANY (ids);
    IF n > 0 THEN
        INSERT INTO ledger_chain (seq, transaction_id, hash)
        SELECT * FROM unnest(link_seqs, link_ids, link_hashes);
        UPDATE ledger_chain_head SET seq = head_seq, hash = head_hash WHERE id = 1;
    END IF;
    RETURN n;
END $$
"""

# ledger_post(p_now, p_batch): always seals when it can take the head (migration 0003).
POST_SEALING = """
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

# ledger_post(p_now, p_batch, p_seal): a batch job may leave sealing until it commits
# (migration 0007); the current version.
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
