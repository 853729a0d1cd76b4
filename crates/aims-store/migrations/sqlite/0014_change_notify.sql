-- Issue 18 (PostgreSQL's 0014 also adds change notification triggers; one SQLite store has
-- one server, which announces its own changes in process).
-- AIMS PO-3: which policy version each enforcement point decides with, as it last said when
-- asking for the policy in force (`aims policy apply --wait`).
CREATE TABLE policy_followers (
    spiffe_id TEXT PRIMARY KEY,
    version   BIGINT NOT NULL,
    seen_at   BIGINT NOT NULL
);

-- Registered OAuth clients: every registration, replacement and deletion bumps this counter, so
-- each replica drops its cached copies when another replica changed one.
INSERT INTO counters (name, value) VALUES ('clients', 0);

-- Random values every replica must share and none may choose alone (the DPoP nonce key): made
-- once by whichever replica asks first. They guard freshness, not identity; keys stay files.
CREATE TABLE shared_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);
