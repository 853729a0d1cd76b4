-- Issue 17: audit records that cost little. The record column holds the compact form the audit
-- crate writes (its repeated strings as references to `audit_strings`), or, for records from
-- before, their JSON text as it was; either rebuilds the exact bytes the tree hashed. `idx` is
-- the rowid itself (a `BIGINT PRIMARY KEY` was a second index), and hashes are 32 bytes
-- instead of 64 hex characters.
CREATE TABLE audit_log_compact (
    idx            INTEGER PRIMARY KEY,
    leaf_hash      BLOB NOT NULL,
    record         TEXT NOT NULL,
    appended_at    BIGINT NOT NULL,
    correlation_id TEXT
);
INSERT INTO audit_log_compact (idx, leaf_hash, record, appended_at, correlation_id)
    SELECT idx, unhex(leaf_hash), record, appended_at, correlation_id FROM audit_log;
DROP TABLE audit_log;
ALTER TABLE audit_log_compact RENAME TO audit_log;
CREATE INDEX audit_log_correlation ON audit_log (correlation_id);

CREATE TABLE audit_nodes_compact (
    id    INTEGER PRIMARY KEY,
    hash  BLOB NOT NULL
);
INSERT INTO audit_nodes_compact (id, hash) SELECT id, unhex(hash) FROM audit_nodes;
DROP TABLE audit_nodes;
ALTER TABLE audit_nodes_compact RENAME TO audit_nodes;

-- Strings records repeat (SPIFFE IDs, resources, actions, policy reasons), each stored once.
CREATE TABLE audit_strings (
    id     INTEGER PRIMARY KEY,
    value  TEXT NOT NULL UNIQUE
);
