-- Governance schema v1 (PostgreSQL). Times are UNIX seconds (UTC); `day` is the UTC date, for reports.
CREATE TABLE teams (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    allowed_models TEXT,
    budget_daily DOUBLE PRECISION,
    budget_monthly DOUBLE PRECISION,
    budget_mode TEXT NOT NULL DEFAULT 'hard',
    rpm INTEGER,
    tpm INTEGER,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    team_id TEXT NOT NULL REFERENCES teams(id),
    name TEXT NOT NULL DEFAULT '',
    key_hash TEXT NOT NULL UNIQUE,
    prefix TEXT NOT NULL,
    allowed_models TEXT,
    budget_daily DOUBLE PRECISION,
    budget_monthly DOUBLE PRECISION,
    budget_mode TEXT NOT NULL DEFAULT 'hard',
    rpm INTEGER,
    tpm INTEGER,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    expires_at DOUBLE PRECISION,
    revoked_at DOUBLE PRECISION
);
CREATE INDEX api_keys_team ON api_keys(team_id);

CREATE TABLE ledger (
    request_id TEXT PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    day TEXT NOT NULL,
    key_id TEXT,
    team_id TEXT,
    api TEXT NOT NULL,
    model_asked TEXT NOT NULL,
    route TEXT NOT NULL,
    deployment TEXT,
    provider TEXT,
    vendor TEXT,
    attempts INTEGER NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    cache_write_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    estimated INTEGER NOT NULL,
    cost DOUBLE PRECISION NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    ttft_ms DOUBLE PRECISION,
    status INTEGER NOT NULL,
    error_class TEXT,
    error_message TEXT,
    stream INTEGER NOT NULL,
    tags TEXT,
    end_user TEXT,
    prompt TEXT,
    response TEXT
);
CREATE INDEX ledger_ts ON ledger(ts);
CREATE INDEX ledger_day ON ledger(day);
CREATE INDEX ledger_key_ts ON ledger(key_id, ts);
CREATE INDEX ledger_team_ts ON ledger(team_id, ts);
CREATE INDEX ledger_model_ts ON ledger(model_asked, ts);
CREATE INDEX ledger_vendor_ts ON ledger(vendor, ts);

CREATE TABLE ledger_attempts (
    request_id TEXT NOT NULL,
    n INTEGER NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    deployment TEXT NOT NULL,
    provider TEXT NOT NULL,
    vendor TEXT NOT NULL,
    status INTEGER NOT NULL,
    error TEXT,
    latency_ms DOUBLE PRECISION NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (request_id, n)
);
CREATE INDEX ledger_attempts_ts ON ledger_attempts(ts);
CREATE INDEX ledger_attempts_vendor_ts ON ledger_attempts(vendor, ts);
CREATE INDEX ledger_attempts_deployment_ts ON ledger_attempts(deployment, ts);

CREATE TABLE audit_log (
    id BIGSERIAL PRIMARY KEY,
    ts DOUBLE PRECISION NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT,
    source TEXT
);
CREATE INDEX audit_log_ts ON audit_log(ts);
