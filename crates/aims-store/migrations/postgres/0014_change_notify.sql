-- Issue 18: replicas sharing this database hear of each other's changes by LISTEN/NOTIFY
-- instead of waiting for their next poll. A change counter moving, a new policy version or a
-- newly published trust bundle (another replica's CA slot) notifies channel `aims_changes`
-- with what changed; PostgreSQL delivers it at commit, to
-- every listening replica (this one included), whichever writer made it.
CREATE FUNCTION aims_notify_change() RETURNS trigger AS $$
BEGIN
    IF TG_TABLE_NAME = 'counters' THEN
        PERFORM pg_notify('aims_changes', NEW.name);
    ELSE
        PERFORM pg_notify('aims_changes', TG_TABLE_NAME);
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER counters_notify AFTER UPDATE ON counters
    FOR EACH ROW EXECUTE FUNCTION aims_notify_change();
CREATE TRIGGER policy_versions_notify AFTER INSERT ON policy_versions
    FOR EACH ROW EXECUTE FUNCTION aims_notify_change();
CREATE TRIGGER bundles_notify AFTER INSERT OR UPDATE ON bundles
    FOR EACH ROW EXECUTE FUNCTION aims_notify_change();

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
    value BYTEA NOT NULL
);
