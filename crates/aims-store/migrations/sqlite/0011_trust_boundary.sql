-- Who revoked a principal (issue 16): the operator ('') or the issuer of the signal that did.
-- A restore signal lifts only what its own issuer revoked, never an operator's ban.
ALTER TABLE revoked_principals ADD COLUMN revoked_by TEXT NOT NULL DEFAULT '';

-- One-time values remembered across restarts and replicas until they expire: client
-- assertion `jti`s (RFC 7523 §3), received SETs (RFC 8417 §2.2 `jti`), trusted issuers'
-- grants. A value is admitted once per scope.
CREATE TABLE used_jtis (
    scope      TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (scope, jti)
);
CREATE INDEX used_jtis_expiry ON used_jtis (expires_at);
