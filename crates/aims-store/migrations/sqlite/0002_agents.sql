-- Join tokens for node attestation: only a digest of each token is kept.
CREATE TABLE join_tokens (
    digest     TEXT PRIMARY KEY,
    spiffe_id  TEXT,                      -- the agent ID to give; NULL: derived from the token
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    created_at INTEGER NOT NULL
);

-- Change counters: replicas sharing a store poll them to learn about changes made elsewhere.
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO counters (name, value) VALUES ('registration', 0);
INSERT INTO counters (name, value) VALUES ('federation', 0);

-- Bundles of foreign trust domains, fetched from their bundle endpoints.
CREATE TABLE federated_bundles (
    trust_domain TEXT PRIMARY KEY,
    document     TEXT NOT NULL,
    endpoint     TEXT NOT NULL,
    sequence     INTEGER NOT NULL,
    refreshed_at INTEGER NOT NULL
);
