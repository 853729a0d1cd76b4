-- Principals (an agent's SPIFFE ID, a client id, a user) whose access was revoked by an operator
-- or a risk signal (AIMS MO-3…MO-5): every token issued to or for them at or before
-- `revoked_at` is inactive for good, and while the revocation stands (not lifted) no new token
-- is issued to or for them.
CREATE TABLE revoked_principals (
    principal  TEXT PRIMARY KEY,
    revoked_at BIGINT NOT NULL,
    cause      TEXT NOT NULL,
    lifted_at  BIGINT
);
CREATE INDEX oauth_tokens_client ON oauth_tokens (client_id);
CREATE INDEX oauth_tokens_subject ON oauth_tokens (subject);
