-- The audit log's Merkle tree (RFC 9162 §2.1) and its signed checkpoints (C2SP tlog-checkpoint).
-- `audit_nodes` holds every perfect subtree's hash (hex) the checkpointer has built, keyed by
-- level * 2^48 + index (level 0: the leaves as certified), so a proof is a few key lookups.
CREATE TABLE audit_nodes (
    id    BIGINT PRIMARY KEY,
    hash  TEXT NOT NULL
);
-- One signed note per tree size; a log never signs two notes for one size.
CREATE TABLE audit_checkpoints (
    size        BIGINT PRIMARY KEY,
    note        TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
-- A task's records (AIMS MO-11), found by their correlation id.
ALTER TABLE audit_log ADD COLUMN correlation_id TEXT;
CREATE INDEX audit_log_correlation ON audit_log (correlation_id);
