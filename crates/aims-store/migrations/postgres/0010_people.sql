-- People in the loop (AIMS AZ-10…AZ-14, AZ-27…AZ-33): users and their passkeys, browser
-- sessions, short-lived flow state, authorization codes, remembered consent and CIBA requests.
-- Secrets (session cookies, codes, auth_req_ids, flow handles) are kept by their SHA-256 only.
CREATE TABLE users (
    user_id       TEXT PRIMARY KEY,           -- stable and never reused (a UUID): `sub` of delegated tokens
    username      TEXT NOT NULL UNIQUE,
    display_name  TEXT NOT NULL,
    password_hash TEXT,                       -- argon2id PHC string; NULL: passkeys only
    is_admin      BIGINT NOT NULL,
    disabled      BIGINT NOT NULL,
    created_at    BIGINT NOT NULL
);

CREATE TABLE user_passkeys (
    credential_id TEXT PRIMARY KEY,           -- base64url
    user_id       TEXT NOT NULL,
    passkey       TEXT NOT NULL,              -- the WebAuthn public key credential record, JSON
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX user_passkeys_user ON user_passkeys (user_id);

CREATE TABLE user_sessions (
    session_hash TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL,
    method       TEXT NOT NULL,               -- how the user signed in (RFC 8176 amr: hwk | pwd)
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL
);
CREATE INDEX user_sessions_user ON user_sessions (user_id);

-- State carried between two steps of a flow: pushed authorization requests (RFC 9126),
-- authorization requests awaiting sign-in or consent, WebAuthn ceremonies, enrolment links.
CREATE TABLE flow_states (
    state_hash TEXT PRIMARY KEY,
    kind       TEXT NOT NULL,
    data       TEXT NOT NULL,                 -- JSON
    expires_at BIGINT NOT NULL
);

CREATE TABLE authorization_codes (
    code_hash  TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    request    TEXT NOT NULL,                 -- what the user approved, JSON
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    issued     TEXT                           -- what redeeming it issued, JSON: revoked if it is reused
);

CREATE TABLE consents (
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    grant_data TEXT NOT NULL,                 -- scopes, resources and authorization details, JSON
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE ciba_requests (
    id_hash        TEXT PRIMARY KEY,          -- SHA-256 of auth_req_id
    approval_id    TEXT NOT NULL UNIQUE,      -- the approval's public reference (pages, tokens, audit)
    client_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    request        TEXT NOT NULL,             -- JSON
    status         TEXT NOT NULL,             -- pending | approved | denied | redeemed
    interval_secs  BIGINT NOT NULL,
    last_polled_at BIGINT,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    decided_at     BIGINT
);
CREATE INDEX ciba_requests_user ON ciba_requests (user_id, status);
