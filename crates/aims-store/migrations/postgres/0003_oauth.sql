-- OAuth clients registered by an operator, by dynamic registration (RFC 7591) or fetched as
-- client ID metadata documents. SPIFFE workloads need no row: their SPIFFE ID is their client_id.
CREATE TABLE oauth_clients (
    client_id   TEXT PRIMARY KEY,
    metadata    TEXT NOT NULL,            -- RFC 7591 client metadata, JSON
    secret_hash TEXT,                     -- legacy client_secret clients only: SHA-256, never the secret
    source      TEXT NOT NULL,            -- admin | dynamic | metadata_document
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- Tokens the server must remember: opaque access tokens and refresh tokens, by the SHA-256 of
-- the token (never the token).
CREATE TABLE oauth_tokens (
    token_hash TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,             -- access | refresh
    jti        TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    claims     TEXT NOT NULL,             -- what introspection answers, JSON
    family     TEXT,                      -- refresh tokens: the rotation family
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,                        -- refresh tokens: when it was exchanged (rotation)
    revoked_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE INDEX oauth_tokens_family ON oauth_tokens (family);
CREATE INDEX oauth_tokens_expires_at ON oauth_tokens (expires_at);

-- Self-contained (JWT) access tokens revoked before they expire, by jti.
CREATE TABLE oauth_revoked (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
