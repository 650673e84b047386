-- Billing through the marketplaces: each entitlement's binding (whom the marketplace
-- bills), the ledger of what is owed per account × dimension × hour and where its
-- delivery stands, the running positions planning carries from hour to hour, and every
-- exchange with a marketplace, chained as evidence.

ALTER TABLE entitlements ADD COLUMN marketplace_binding TEXT; -- JSON, purser_core::marketplace::Binding

CREATE TABLE marketplace_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    planned_through BIGINT, -- the start of the last closed hour planned; every earlier one is
    exchange_seq BIGINT NOT NULL,
    exchange_hash TEXT NOT NULL
);
INSERT INTO marketplace_head (id, planned_through, exchange_seq, exchange_hash)
VALUES (1, NULL, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- One row per account × dimension × hour owed to a marketplace: an hour is billed once
-- whatever its binding, so the key excludes the marketplace's identifiers.
CREATE TABLE marketplace_records (
    record_key TEXT PRIMARY KEY, -- UUID v5 of marketplace, account, dimension, hour
    marketplace TEXT NOT NULL,
    account_id TEXT NOT NULL,
    entitlement_id TEXT NOT NULL,
    dimension TEXT NOT NULL,
    marketplace_dimension TEXT NOT NULL,
    hour BIGINT NOT NULL,
    quantity TEXT NOT NULL,   -- what is sent
    owed TEXT NOT NULL,       -- what the hour itself owes
    carried_in TEXT NOT NULL, -- what earlier hours carried into it
    binding TEXT NOT NULL,    -- JSON, as planned
    whole_units BIGINT NOT NULL, -- 1 when the offer reports the dimension in whole units
    state TEXT NOT NULL,      -- due, sending, accepted, refused, conflict, expired
    attempts BIGINT NOT NULL,
    -- Whether an attempt reached the marketplace without an answer: such a record is
    -- never carried into another hour, which could bill it twice.
    uncertain BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    deadline BIGINT NOT NULL,
    alert_at BIGINT NOT NULL,
    lease_owner TEXT,
    lease_until BIGINT,
    outcome TEXT,             -- JSON, the last RecordOutcome
    marketplace_id TEXT,      -- the marketplace's id for the accepted record
    planned_at BIGINT NOT NULL,
    first_sent_at BIGINT,
    settled_at BIGINT,
    carried_out BIGINT NOT NULL, -- 1 when an expired record's quantity was carried on
    UNIQUE (account_id, dimension, hour)
);
CREATE INDEX marketplace_records_pending ON marketplace_records (state, next_attempt_at);
CREATE INDEX marketplace_records_by_hour ON marketplace_records (hour, marketplace);

CREATE TABLE marketplace_positions (
    account_id TEXT NOT NULL,
    dimension TEXT NOT NULL,
    marketplace TEXT NOT NULL,
    position TEXT NOT NULL, -- JSON, purser_core::marketplace::planning::Position
    through_hour BIGINT NOT NULL,
    PRIMARY KEY (account_id, dimension)
);

CREATE TABLE marketplace_exchanges (
    seq BIGINT PRIMARY KEY,
    started_at BIGINT NOT NULL,
    marketplace TEXT NOT NULL,
    operation TEXT NOT NULL,
    method TEXT NOT NULL,
    url TEXT NOT NULL,
    request_body TEXT NOT NULL,
    status BIGINT,
    response_body TEXT,
    error TEXT,
    elapsed_ms BIGINT NOT NULL,
    record_keys TEXT NOT NULL, -- space-separated record keys
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX marketplace_exchanges_by_time ON marketplace_exchanges (started_at);
