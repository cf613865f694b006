-- Nothing to change: SQLite's INTEGER already holds 64-bit values (PostgreSQL's 0003 widens rpm
-- and tpm to BIGINT). Kept so that both databases have the same migration numbers.
SELECT 1;
