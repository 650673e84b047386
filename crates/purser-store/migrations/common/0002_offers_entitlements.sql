-- What was sold: offers (the catalogue) and entitlements (an account's right under an
-- offer). Nested definitions are JSON text exactly as validated by purser-core.

CREATE TABLE offers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    marketplace TEXT NOT NULL,
    currency TEXT NOT NULL,
    definition TEXT NOT NULL, -- {"dimensions": [...], "pricing": {...}}
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE entitlements (
    id TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts (id),
    offer_id TEXT NOT NULL REFERENCES offers (id),
    start_at BIGINT NOT NULL,
    end_at BIGINT NOT NULL,
    status TEXT NOT NULL,
    commitments TEXT NOT NULL, -- {"<dimension>": {"committed_per_period": ..., "overage": {...}}}
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX entitlements_by_account ON entitlements (account_id, start_at);
