-- The audit log (AIMS MO-1, MO-8): append-only, one row per record, numbered from 0 without
-- gaps; `leaf_hash` is the record's RFC 9162 §2.1.1 leaf hash (hex), `record` its exact bytes.
CREATE TABLE audit_log (
    idx          BIGINT PRIMARY KEY,
    leaf_hash    TEXT NOT NULL,
    record       TEXT NOT NULL,
    appended_at  BIGINT NOT NULL
);
