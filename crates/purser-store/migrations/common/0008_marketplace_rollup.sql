-- Reconciling a month without reading every record: what was accepted, rolled up per
-- account × marketplace × UTC day, and an index holding only the records that are not
-- accepted (the ones reconciliation lists one by one). `migrate` fills the roll-up
-- from the existing records right after this file (`marketplace_rollup::rebuild`):
-- its quantities are exact decimal sums, which SQLite's SQL cannot compute.

-- Invariant: each row equals COUNT(*) and the exact SUM(quantity) of the
-- marketplace_records in state 'accepted' of its account, marketplace and day. It
-- is kept in the transaction that records outcomes, the only one that makes a record
-- accepted; no record ever leaves 'accepted'.
CREATE TABLE marketplace_accepted_days (
    day BIGINT NOT NULL,     -- the UTC day's start, microseconds
    marketplace TEXT NOT NULL,
    account_id TEXT NOT NULL,
    records BIGINT NOT NULL,
    quantity TEXT NOT NULL,  -- exact decimal
    PRIMARY KEY (day, marketplace, account_id)
);

-- Records not accepted, by hour: few in a healthy month, all of them in a month
-- where nothing was taken (then reconciliation is slower, never different).
CREATE INDEX marketplace_records_unaccepted ON marketplace_records (hour) WHERE state <> 'accepted';

-- Where the exchange chain was last verified by re-reading it: each row says the
-- exchanges up to `seq` were re-hashed at `verified_at` and linked, through the
-- checkpoint before it, to the chain's start. Reconciliation re-hashes the
-- checkpoint's own exchange and everything after it; `purser reconcile --full`
-- walks the whole chain. Losing a row costs a longer walk, never a wrong answer.
CREATE TABLE marketplace_exchange_checkpoints (
    seq BIGINT PRIMARY KEY,
    hash TEXT NOT NULL,
    verified_at BIGINT NOT NULL,
    walked_from BIGINT NOT NULL -- the first exchange that walk re-hashed
);
