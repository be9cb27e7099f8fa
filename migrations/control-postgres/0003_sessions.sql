-- Server-side sessions, so they can be listed and revoked. The cookie carries a random secret;
-- only its SHA-256 is stored.

CREATE TABLE sessions (
    id_sha256    TEXT COLLATE "C" PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf_token   TEXT COLLATE "C" NOT NULL,
    created_at   TEXT COLLATE "C" NOT NULL,
    last_seen_at TEXT COLLATE "C" NOT NULL,
    expires_at   TEXT COLLATE "C" NOT NULL,
    user_agent   TEXT COLLATE "C" NOT NULL DEFAULT '',
    ip           TEXT COLLATE "C" NOT NULL DEFAULT ''
);

CREATE INDEX sessions_by_user ON sessions (user_id, created_at);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);
