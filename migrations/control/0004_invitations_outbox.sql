-- Invitations to a workspace, password resets, and the outbox of emails to send.

CREATE TABLE invitations (
    id           TEXT PRIMARY KEY,                   -- UUID v7
    token_sha256 TEXT NOT NULL UNIQUE,               -- the link carries the secret; only its digest is kept
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    email        TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('admin', 'member')),
    invited_by   TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    accepted_at  TEXT,
    revoked_at   TEXT
) STRICT;

CREATE INDEX invitations_by_tenant ON invitations (tenant_id, created_at);

CREATE TABLE password_resets (
    token_sha256 TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    used_at      TEXT
) STRICT;

-- Emails are written here first (and logged); `silo serve` delivers them when SMTP is
-- configured, retrying with backoff (next_attempt_at) and recording the last error.
CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    created_at      TEXT NOT NULL,
    recipient       TEXT NOT NULL,
    subject         TEXT NOT NULL,
    body            TEXT NOT NULL,
    sent_at         TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT,
    error           TEXT
) STRICT;

CREATE INDEX outbox_unsent ON outbox (id) WHERE sent_at IS NULL;

-- The admin console sorts and searches 100,000 tenants.
CREATE INDEX tenants_by_slug ON tenants (slug, created_at);
CREATE INDEX tenants_by_name ON tenants (name COLLATE NOCASE, slug);
CREATE INDEX tenants_by_created ON tenants (created_at);
CREATE INDEX tenants_by_plan ON tenants (plan, slug);
