-- Registration entries: which workloads (by selectors, under which parent) get which SPIFFE ID.
CREATE TABLE registration_entries (
    id            TEXT PRIMARY KEY,
    spiffe_id     TEXT NOT NULL,
    parent_id     TEXT NOT NULL,
    selectors     TEXT NOT NULL,          -- JSON array of "type:value"
    x509_svid_ttl INTEGER NOT NULL,       -- seconds; 0 = server default
    jwt_svid_ttl  INTEGER NOT NULL,
    dns_names     TEXT NOT NULL,          -- JSON array
    admin         INTEGER NOT NULL,
    hint          TEXT,
    revision      INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX registration_entries_spiffe_id ON registration_entries (spiffe_id);
CREATE INDEX registration_entries_parent_id ON registration_entries (parent_id);

-- Attested nodes (agents).
CREATE TABLE nodes (
    spiffe_id        TEXT PRIMARY KEY,
    attestation_type TEXT NOT NULL,
    cert_serial      TEXT NOT NULL,
    cert_not_after   INTEGER NOT NULL,
    selectors        TEXT NOT NULL,
    banned           INTEGER NOT NULL,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);

-- CA slots of every server of the trust domain (public parts and key names only).
CREATE TABLE ca_slots (
    server_id  TEXT NOT NULL,
    slot_id    TEXT NOT NULL,
    status     TEXT NOT NULL,             -- prepared | active | retired
    not_after  INTEGER NOT NULL,
    record     TEXT NOT NULL,             -- JSON SlotRecord
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (server_id, slot_id)
);

-- The published trust bundle of each trust domain, with its spiffe_sequence.
CREATE TABLE bundles (
    trust_domain TEXT PRIMARY KEY,
    sequence     INTEGER NOT NULL,
    document     TEXT NOT NULL,           -- SPIFFE bundle JWK Set
    keys_digest  TEXT NOT NULL,           -- digest of the keys, to tell a real change
    updated_at   INTEGER NOT NULL
);

-- Every credential issued: serial or token hash, SPIFFE ID, expiry. Never a private key.
CREATE TABLE issued_credentials (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    kind       TEXT NOT NULL,             -- x509-svid | jwt-svid | wit-svid
    serial     TEXT NOT NULL,             -- certificate serial (hex) or SHA-256 of the token
    spiffe_id  TEXT NOT NULL,
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    issuer     TEXT NOT NULL              -- CA slot id
);
CREATE INDEX issued_credentials_spiffe_id ON issued_credentials (spiffe_id);
CREATE INDEX issued_credentials_expires_at ON issued_credentials (expires_at);
