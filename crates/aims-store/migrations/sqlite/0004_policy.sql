-- Versioned policy sets (AIMS PO-2, PO-3): every version ever put in force, the newest is the
-- one in force on every replica and gateway.
CREATE TABLE policy_versions (
    version     BIGINT PRIMARY KEY,
    hash        TEXT NOT NULL,
    text        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    author      TEXT NOT NULL
);
