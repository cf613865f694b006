-- Hourly roll-ups of the ledger (polyroute/governance/rollup.py), kept by the ledger writer in the
-- transaction that inserts the rows; back-filled from the rows already there right after this file
-- runs, in the same transaction. `hour` is the UNIX time of the UTC hour's start; '' stands for NULL.
CREATE INDEX ledger_provider_ts ON ledger(provider, ts);
-- Nothing reads through these any more (reports by day and per vendor or deployment read the
-- roll-ups, and raw rows by time): dropping them pays for part of the roll-ups' write cost.
DROP INDEX ledger_day;
DROP INDEX ledger_attempts_vendor_ts;
DROP INDEX ledger_attempts_deployment_ts;

CREATE TABLE ledger_hourly (
    hour INTEGER NOT NULL,
    key_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    model_asked TEXT NOT NULL,
    provider TEXT NOT NULL,
    vendor TEXT NOT NULL,
    ok INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    attempts INTEGER NOT NULL,
    PRIMARY KEY (hour, key_id, team_id, model_asked, provider, vendor, ok)
) WITHOUT ROWID;

CREATE TABLE ledger_hourly_dim (
    dim TEXT NOT NULL,
    hour INTEGER NOT NULL,
    value TEXT NOT NULL,
    ok INTEGER NOT NULL,
    requests INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    attempts INTEGER NOT NULL,
    PRIMARY KEY (dim, hour, value, ok)
) WITHOUT ROWID;

CREATE TABLE ledger_hourly_hist (
    dim TEXT NOT NULL,
    value TEXT NOT NULL,
    hour INTEGER NOT NULL,
    bin INTEGER NOT NULL,
    latency INTEGER NOT NULL,
    ttft INTEGER NOT NULL,
    PRIMARY KEY (dim, value, hour, bin)
) WITHOUT ROWID;

CREATE TABLE ledger_attempts_hourly (
    hour INTEGER NOT NULL,
    deployment TEXT NOT NULL,
    provider TEXT NOT NULL,
    vendor TEXT NOT NULL,
    ok INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost REAL NOT NULL,
    latency_ms REAL NOT NULL,
    PRIMARY KEY (hour, deployment, provider, vendor, ok)
) WITHOUT ROWID;
