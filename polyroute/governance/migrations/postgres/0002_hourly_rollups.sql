-- Hourly roll-ups of the ledger (polyroute/governance/rollup.py), kept by the ledger writer in the
-- transaction that inserts the rows; back-filled from the rows already there right after this file
-- runs, in the same transaction. `hour` is the UNIX time of the UTC hour's start; '' stands for NULL.
-- fillfactor 90: the current hour's rows are updated by every batch; room on their page keeps
-- those updates HOT (no index entry per update, the rows stay together).
CREATE INDEX ledger_provider_ts ON ledger(provider, ts);
-- Nothing reads through these any more (reports by day and per vendor or deployment read the
-- roll-ups, and raw rows by time): dropping them pays for part of the roll-ups' write cost.
DROP INDEX ledger_day;
DROP INDEX ledger_attempts_vendor_ts;
DROP INDEX ledger_attempts_deployment_ts;

CREATE TABLE ledger_hourly (
    hour BIGINT NOT NULL,
    key_id TEXT NOT NULL,
    team_id TEXT NOT NULL,
    model_asked TEXT NOT NULL,
    provider TEXT NOT NULL,
    vendor TEXT NOT NULL,
    ok INTEGER NOT NULL,
    requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost DOUBLE PRECISION NOT NULL,
    attempts BIGINT NOT NULL,
    PRIMARY KEY (hour, key_id, team_id, model_asked, provider, vendor, ok)
) WITH (fillfactor = 90);

CREATE TABLE ledger_hourly_dim (
    dim TEXT NOT NULL,
    hour BIGINT NOT NULL,
    value TEXT NOT NULL,
    ok INTEGER NOT NULL,
    requests BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cached_tokens BIGINT NOT NULL,
    reasoning_tokens BIGINT NOT NULL,
    cost DOUBLE PRECISION NOT NULL,
    attempts BIGINT NOT NULL,
    PRIMARY KEY (dim, hour, value, ok)
) WITH (fillfactor = 90);

CREATE TABLE ledger_hourly_hist (
    dim TEXT NOT NULL,
    value TEXT NOT NULL,
    hour BIGINT NOT NULL,
    bin INTEGER NOT NULL,
    latency BIGINT NOT NULL,
    ttft BIGINT NOT NULL,
    PRIMARY KEY (dim, value, hour, bin)
) WITH (fillfactor = 90);

CREATE TABLE ledger_attempts_hourly (
    hour BIGINT NOT NULL,
    deployment TEXT NOT NULL,
    provider TEXT NOT NULL,
    vendor TEXT NOT NULL,
    ok INTEGER NOT NULL,
    attempts BIGINT NOT NULL,
    input_tokens BIGINT NOT NULL,
    output_tokens BIGINT NOT NULL,
    cost DOUBLE PRECISION NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (hour, deployment, provider, vendor, ok)
) WITH (fillfactor = 90);
