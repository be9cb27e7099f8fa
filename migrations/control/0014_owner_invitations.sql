-- An operator provisioning a workspace for an address without an account invites its first
-- owner: an invitation's role may now be 'owner'. SQLite cannot change a CHECK in place, so the
-- table is rebuilt with the same columns, rows and index (nothing references it).

CREATE TABLE invitations_new (
    id           TEXT PRIMARY KEY,                   -- UUID v7
    token_sha256 TEXT NOT NULL UNIQUE,               -- the link carries the secret; only its digest is kept
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    email        TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    invited_by   TEXT REFERENCES users (id) ON DELETE SET NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    accepted_at  TEXT,
    revoked_at   TEXT
) STRICT;

INSERT INTO invitations_new (id, token_sha256, tenant_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at)
SELECT id, token_sha256, tenant_id, email, role, invited_by, created_at, expires_at, accepted_at, revoked_at
FROM invitations;

DROP TABLE invitations;
ALTER TABLE invitations_new RENAME TO invitations;
CREATE INDEX invitations_by_tenant ON invitations (tenant_id, created_at);
