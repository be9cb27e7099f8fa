-- Global accounts: people, who operates Silo, who belongs to which tenant, and API tokens.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,                  -- UUID v7
    email         TEXT NOT NULL UNIQUE,              -- stored lowercased
    display_name  TEXT NOT NULL,
    password_hash TEXT NOT NULL,                     -- argon2id PHC string
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
) STRICT;

CREATE TABLE operators (
    user_id    TEXT PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE memberships (
    user_id    TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at TEXT NOT NULL,
    PRIMARY KEY (user_id, tenant_id)
) STRICT;

CREATE INDEX memberships_by_tenant ON memberships (tenant_id, user_id);

-- Tokens are shown once and stored as SHA-256 digests. Operator tokens have no tenant;
-- personal tokens act for their user in one tenant.
CREATE TABLE api_tokens (
    id           TEXT PRIMARY KEY,
    user_id      TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id    TEXT REFERENCES tenants (id),
    kind         TEXT NOT NULL CHECK (kind IN ('operator', 'personal')),
    token_sha256 TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT,
    CHECK ((kind = 'operator') = (tenant_id IS NULL))
) STRICT;

CREATE INDEX api_tokens_by_user ON api_tokens (user_id);
