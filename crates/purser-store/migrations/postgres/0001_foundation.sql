-- Foundation: boundaries, users, tokens, sessions, accounts, the audit log, job runs.
-- Instants are BIGINT microseconds since the Unix epoch, UTC, in both dialects.

CREATE TABLE boundaries (
    name TEXT PRIMARY KEY,
    description TEXT NOT NULL,
    required_clearance TEXT,
    allowed_residencies TEXT NOT NULL, -- comma-separated ISO 3166-1 alpha-2 codes
    created_at BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    username TEXT NOT NULL UNIQUE,
    display_name TEXT NOT NULL,
    password_hash TEXT,
    roles TEXT NOT NULL, -- comma-separated
    clearances TEXT NOT NULL, -- comma-separated
    residency TEXT,
    disabled_at BIGINT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    name TEXT NOT NULL,
    secret_digest TEXT NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    UNIQUE (user_id, name)
);

CREATE TABLE sessions (
    secret_digest TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES users (id),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_expiry ON sessions (expires_at);

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    name TEXT COLLATE "C" NOT NULL,
    external_id TEXT NOT NULL UNIQUE,
    marketplace TEXT NOT NULL,
    marketplace_account_id TEXT,
    crm_account_id TEXT,
    boundary TEXT NOT NULL REFERENCES boundaries (name),
    region TEXT NOT NULL,
    owner_account_executive TEXT,
    owner_csm TEXT,
    owner_tam TEXT,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX accounts_by_name ON accounts (name, id);
CREATE INDEX accounts_by_boundary ON accounts (boundary);

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    account_id TEXT,
    boundary TEXT,
    target TEXT,
    details TEXT NOT NULL,
    request_id TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_log_by_account ON audit_log (account_id, seq);
CREATE INDEX audit_log_by_actor ON audit_log (actor, seq);
CREATE INDEX audit_log_by_action ON audit_log (action, seq);
CREATE INDEX audit_log_by_time ON audit_log (at);

-- Append-only: the database refuses to change or remove an entry. Someone with the
-- power to drop these triggers can still tamper, which is what verification catches.
CREATE FUNCTION audit_log_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN RAISE EXCEPTION 'the audit log is append-only'; END;
$$;
CREATE TRIGGER audit_log_no_update BEFORE UPDATE OR DELETE ON audit_log
FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- The head of the chain, one row, locked by every append so appends are serial.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head (id, seq, hash)
VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');

CREATE TABLE job_runs (
    job TEXT NOT NULL,
    slot BIGINT NOT NULL, -- the start of the period this run is due for
    state TEXT NOT NULL, -- pending, running, done, failed
    owner TEXT,
    lease_until BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    scheduled_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    outcome TEXT,
    PRIMARY KEY (job, slot)
);
CREATE INDEX job_runs_by_state ON job_runs (state, slot);
