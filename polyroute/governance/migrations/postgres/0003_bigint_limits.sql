-- rpm and tpm as BIGINT: a tpm in the billions ("no practical limit") did not fit INTEGER, and
-- the admin API answered 500 where SQLite stored the value.
ALTER TABLE teams ALTER COLUMN rpm TYPE BIGINT, ALTER COLUMN tpm TYPE BIGINT;
ALTER TABLE api_keys ALTER COLUMN rpm TYPE BIGINT, ALTER COLUMN tpm TYPE BIGINT;
