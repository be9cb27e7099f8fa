-- Security hardening: sign-ups confirmed by email, hand-offs to workspace hosts, token expiry,
-- session families, and no usable link at rest in the outbox.

-- A sign-up waits here until its address is confirmed through the emailed link; the account and
-- its workspace are created only then (so sign-up answers the same for known and new addresses).
CREATE TABLE signups (
    token_sha256   TEXT COLLATE "C" PRIMARY KEY,                 -- the link carries the secret; only its digest is kept
    email          TEXT COLLATE "C" NOT NULL,                    -- lowercased
    display_name   TEXT COLLATE "C" NOT NULL,
    password_hash  TEXT COLLATE "C" NOT NULL,                    -- argon2id PHC string
    workspace_name TEXT COLLATE "C" NOT NULL,
    slug           TEXT COLLATE "C" NOT NULL,                    -- checked again at confirmation
    created_at     TEXT COLLATE "C" NOT NULL,
    expires_at     TEXT COLLATE "C" NOT NULL,
    used_at        TEXT COLLATE "C"
);

CREATE INDEX signups_by_expiry ON signups (expires_at);

-- A session started on a workspace host (`{slug}.{base_domain}`) from a session of the main host
-- belongs to that session's family: signing out of either ends both.
ALTER TABLE sessions ADD COLUMN parent_id TEXT COLLATE "C" REFERENCES sessions (id_sha256) ON DELETE CASCADE;
CREATE INDEX sessions_by_parent ON sessions (parent_id) WHERE parent_id IS NOT NULL;

-- One-time hand-offs from a signed-in main-host session to a workspace host. `state` binds the
-- hand-off to the browser that asked for it (a cookie on the workspace host).
CREATE TABLE handoffs (
    token_sha256 TEXT COLLATE "C" PRIMARY KEY,
    session_id   TEXT COLLATE "C" NOT NULL REFERENCES sessions (id_sha256) ON DELETE CASCADE,
    tenant_id    TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    state_sha256 TEXT COLLATE "C" NOT NULL,
    next_path    TEXT COLLATE "C" NOT NULL,
    created_at   TEXT COLLATE "C" NOT NULL,
    expires_at   TEXT COLLATE "C" NOT NULL,
    used_at      TEXT COLLATE "C"
);

-- API tokens may expire (NULL: never).
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT COLLATE "C";

-- Links in emails are no longer stored in the body: the body holds `{link}` and the link is
-- sealed (AES-256-GCM under a key derived from the master key, which is not in this database)
-- until the email is sent or the link expires; then the sealed copy is removed.
ALTER TABLE outbox ADD COLUMN link_sealed BYTEA;
ALTER TABLE outbox ADD COLUMN link_expires_at TEXT COLLATE "C";
-- Emails queued before this migration carried their links in the clear: remove them.
UPDATE outbox SET body = '(removed: this email carried a one-time link, which is not kept at rest)'
WHERE body LIKE '%/password/reset/%' OR body LIKE '%/invitations/%';
CREATE INDEX outbox_sealed_links ON outbox (link_expires_at) WHERE link_sealed IS NOT NULL;
