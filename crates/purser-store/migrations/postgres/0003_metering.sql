-- Metering: meters, the exact input of every accepted batch, what each accepted event
-- contributes (in slices per batch and hour), the quarantine, and closed hours with
-- their chained evidence. Instants are microseconds since the epoch (UTC).

CREATE TABLE meters (
    name TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    definition TEXT NOT NULL, -- the meter as validated, JSON
    created_at BIGINT NOT NULL
);

-- One row, locked by every ingest and every closing so that, across processes,
-- deduplication and the closed/open state of hours are decided one batch at a time.
CREATE TABLE metering_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    closed_through BIGINT, -- the start of the last closed hour; every earlier hour is closed
    n_batches BIGINT NOT NULL,
    evidence_seq BIGINT NOT NULL,
    evidence_hash TEXT NOT NULL
);
INSERT INTO metering_head (id, closed_through, n_batches, evidence_seq, evidence_hash)
VALUES (1, NULL, 0, 0, '0000000000000000000000000000000000000000000000000000000000000000');

-- The exact bytes of each accepted request body, compressed, with their digest.
CREATE TABLE ingest_batches (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_at BIGINT NOT NULL,
    via TEXT NOT NULL, -- api, cli
    actor TEXT NOT NULL,
    request_id TEXT,
    framing TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    body_bytes BIGINT NOT NULL,
    body BYTEA NOT NULL, -- zstd
    n_events BIGINT NOT NULL,
    n_accepted BIGINT NOT NULL,
    n_duplicate BIGINT NOT NULL,
    n_quarantined BIGINT NOT NULL,
    n_rejected BIGINT NOT NULL
);
CREATE INDEX ingest_batches_by_time ON ingest_batches (received_at);

-- The accepted events of one batch that belong to one hour and were booked into one
-- hour (the same, unless they arrived after their hour closed).
CREATE TABLE usage_slices (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    batch_id BIGINT NOT NULL REFERENCES ingest_batches (id),
    hour BIGINT NOT NULL,
    booked_hour BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    n_events BIGINT NOT NULL,
    keys BYTEA NOT NULL, -- the events' keys, 16 bytes each, sorted
    contributions BYTEA NOT NULL -- zstd: what each event gives each meter
);
CREATE INDEX usage_slices_by_hour ON usage_slices (hour);
CREATE INDEX usage_slices_by_booked_hour ON usage_slices (booked_hour);

CREATE TABLE usage_quarantine (
    event_key BYTEA PRIMARY KEY,
    batch_id BIGINT NOT NULL REFERENCES ingest_batches (id),
    ordinal BIGINT NOT NULL, -- the event's index in its batch
    subject TEXT NOT NULL,
    event_type TEXT NOT NULL,
    event_time BIGINT NOT NULL,
    reason TEXT NOT NULL, -- unknown_account, unknown_meter
    detail TEXT NOT NULL,
    event TEXT NOT NULL, -- the event, CloudEvents JSON
    received_at BIGINT NOT NULL,
    replayed_at BIGINT,
    replayed_batch BIGINT
);
CREATE INDEX usage_quarantine_by_subject ON usage_quarantine (subject);

CREATE TABLE closed_hours (
    hour BIGINT PRIMARY KEY,
    closed_at BIGINT NOT NULL,
    n_accounts BIGINT NOT NULL,
    n_events BIGINT NOT NULL,
    n_late BIGINT NOT NULL
);

CREATE TABLE meter_hours (
    account_id TEXT NOT NULL,
    hour BIGINT NOT NULL,
    meter TEXT NOT NULL,
    grp TEXT,
    n_events BIGINT NOT NULL,
    value TEXT,
    quantity TEXT,
    carry_out TEXT
);
CREATE INDEX meter_hours_by_account ON meter_hours (account_id, hour);
CREATE INDEX meter_hours_by_hour ON meter_hours (hour);

CREATE TABLE dimension_hours (
    account_id TEXT NOT NULL,
    dimension TEXT NOT NULL,
    hour BIGINT NOT NULL,
    quantity TEXT NOT NULL,
    adjustment TEXT NOT NULL,
    entitlement_id TEXT,
    period_start BIGINT,
    committed TEXT,
    consumed_after TEXT,
    within_commit TEXT,
    overage_quantity TEXT,
    overage_amount TEXT,
    currency TEXT,
    PRIMARY KEY (account_id, dimension, hour)
);
CREATE INDEX dimension_hours_by_period ON dimension_hours (period_start, hour);

CREATE TABLE hour_evidence (
    seq BIGINT PRIMARY KEY,
    closed_at BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    hour BIGINT NOT NULL,
    input_digest TEXT NOT NULL,
    n_events BIGINT NOT NULL,
    result TEXT NOT NULL,
    result_digest TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    UNIQUE (account_id, hour)
);
CREATE INDEX hour_evidence_by_hour ON hour_evidence (hour);

-- What was received and what was concluded from it are never edited.
CREATE FUNCTION metering_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END;
$$;
CREATE TRIGGER ingest_batches_no_update BEFORE UPDATE OR DELETE ON ingest_batches
FOR EACH ROW EXECUTE FUNCTION metering_refuse_change();
CREATE TRIGGER ingest_batches_no_truncate BEFORE TRUNCATE ON ingest_batches
FOR EACH STATEMENT EXECUTE FUNCTION metering_refuse_change();
CREATE TRIGGER hour_evidence_no_update BEFORE UPDATE OR DELETE ON hour_evidence
FOR EACH ROW EXECUTE FUNCTION metering_refuse_change();
CREATE TRIGGER hour_evidence_no_truncate BEFORE TRUNCATE ON hour_evidence
FOR EACH STATEMENT EXECUTE FUNCTION metering_refuse_change();
