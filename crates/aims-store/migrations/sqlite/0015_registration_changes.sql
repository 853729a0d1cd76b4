-- Issue 18: incremental sync. Every write that moves the `registration` counter (an entry
-- created, updated or deleted; an agent banned or evicted) records what it changed here, under
-- the counter's new value. The counter's row lock orders these writes, so sequence numbers
-- commit in order without gaps: a replica that has applied every change up to N reads
-- `seq > N` and misses nothing, and an agent resuming at N gets only what changed since.
-- The newest changes are kept (see `MAX_RETAINED_CHANGES`); a reader further behind reloads.
CREATE TABLE registration_changes (
    seq      BIGINT PRIMARY KEY,
    -- The entry created, updated or deleted (its row, or its absence, says which).
    entry_id TEXT,
    -- The agent banned or evicted.
    node_id  TEXT,
    at       BIGINT NOT NULL
);
