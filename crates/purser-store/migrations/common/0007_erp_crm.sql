-- ERP exports: a month's invoice lines, computed once its last hour is closed and
-- never changed after (triggers per dialect refuse UPDATE and DELETE). Each line keeps
-- its account's boundary so that reads filter by it in SQL.
CREATE TABLE erp_exports (
    month TEXT PRIMARY KEY, -- 2026-11
    period_start BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    created_by TEXT NOT NULL,
    n_lines BIGINT NOT NULL,
    lines_digest TEXT NOT NULL -- SHA-256 of the JSON lines, each newline-terminated
);

CREATE TABLE erp_export_lines (
    month TEXT NOT NULL REFERENCES erp_exports (month),
    line_no BIGINT NOT NULL,
    account_id TEXT NOT NULL,
    boundary TEXT NOT NULL,
    line TEXT NOT NULL, -- the line's JSON, exactly as hashed
    PRIMARY KEY (month, line_no)
);

-- Records a CRM import held back because they would corrupt billing, one row per kind
-- and record; resolved when a later import of the record no longer has the problem.
CREATE TABLE crm_findings (
    finding_key TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    record_type TEXT NOT NULL,
    record_external_id TEXT NOT NULL,
    account_external_id TEXT NOT NULL,
    account_name TEXT NOT NULL,
    boundary TEXT NOT NULL,
    message TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    resolved_at BIGINT
);
CREATE INDEX crm_findings_by_record ON crm_findings (record_type, record_external_id);
