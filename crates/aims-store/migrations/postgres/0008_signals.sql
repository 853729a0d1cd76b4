-- OpenID Shared Signals (AIMS MO-2…MO-5): the transmitter's streams, each owned by the receiver
-- that made it, and an outbox of signed SETs per stream, kept until the receiver acknowledges
-- them (poll, RFC 8936) or accepts them (push, RFC 8935): nothing is dropped on the way.
CREATE TABLE ssf_streams (
    stream_id  TEXT PRIMARY KEY,
    owner      TEXT NOT NULL,
    method     TEXT NOT NULL,
    status     TEXT NOT NULL,
    reason     TEXT,
    config     TEXT NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX ssf_streams_owner ON ssf_streams (owner);
CREATE TABLE ssf_events (
    seq             BIGSERIAL PRIMARY KEY,
    stream_id       TEXT NOT NULL,
    jti             TEXT NOT NULL,
    set_jwt         TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    delivered_at    BIGINT
);
CREATE INDEX ssf_events_pending ON ssf_events (stream_id, delivered_at, seq);
CREATE UNIQUE INDEX ssf_events_jti ON ssf_events (stream_id, jti);
