-- Security hardening: sign-ups confirmed by email, hand-offs to workspace hosts, token expiry,
-- session families, and no usable link at rest in the outbox.

-- A sign-up waits here until its address is confirmed through the emailed link; the account and
-- its workspace are created only then (so sign-up answers the same for known and new addresses).
CREATE TABLE signups (
    token_sha256   TEXT PRIMARY KEY,                 -- the link carries the secret; only its digest is kept
    email          TEXT NOT NULL,                    -- lowercased
    display_name   TEXT NOT NULL,
    password_hash  TEXT NOT NULL,                    -- argon2id PHC string
    workspace_name TEXT NOT NULL,
    slug           TEXT NOT NULL,                    -- checked again at confirmation
    created_at     TEXT NOT NULL,
    expires_at     TEXT NOT NULL,
    used_at        TEXT
) STRICT;

CREATE INDEX signups_by_expiry ON signups (expires_at);

-- A session started on a workspace host (`{slug}.{base_domain}`) from a session of the main host
-- belongs to that session's family: signing out of either ends both.
ALTER TABLE sessions ADD COLUMN parent_id TEXT REFERENCES sessions (id_sha256) ON DELETE CASCADE;
CREATE INDEX sessions_by_parent ON sessions (parent_id) WHERE parent_id IS NOT NULL;

-- One-time hand-offs from a signed-in main-host session to a workspace host. `state` binds the
-- hand-off to the browser that asked for it (a cookie on the workspace host).
CREATE TABLE handoffs (
    token_sha256 TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL REFERENCES sessions (id_sha256) ON DELETE CASCADE,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    state_sha256 TEXT NOT NULL,
    next_path    TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    used_at      TEXT
) STRICT;

-- API tokens may expire (NULL: never).
ALTER TABLE api_tokens ADD COLUMN expires_at TEXT;

-- Links in emails are no longer stored in the body: the body holds `{link}` and the link is
-- sealed (AES-256-GCM under a key derived from the master key, which is not in this database)
-- until the email is sent or the link expires; then the sealed copy is removed.
ALTER TABLE outbox ADD COLUMN link_sealed BLOB;
ALTER TABLE outbox ADD COLUMN link_expires_at TEXT;
-- Emails queued before this migration carried their links in the clear: remove them.
UPDATE outbox SET body = '(removed: this email carried a one-time link, which is not kept at rest)'
WHERE body LIKE '%/password/reset/%' OR body LIKE '%/invitations/%';
CREATE INDEX outbox_sealed_links ON outbox (link_expires_at) WHERE link_sealed IS NOT NULL;
