-- Global accounts: people, who operates Silo, who belongs to which tenant, and API tokens.

CREATE TABLE users (
    id            TEXT COLLATE "C" PRIMARY KEY,                  -- UUID v7
    email         TEXT COLLATE "C" NOT NULL UNIQUE,              -- stored lowercased
    display_name  TEXT COLLATE "C" NOT NULL,
    password_hash TEXT COLLATE "C" NOT NULL,                     -- argon2id PHC string
    created_at    TEXT COLLATE "C" NOT NULL,
    updated_at    TEXT COLLATE "C" NOT NULL
);

CREATE TABLE operators (
    user_id    TEXT COLLATE "C" PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    created_at TEXT COLLATE "C" NOT NULL
);

CREATE TABLE memberships (
    user_id    TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id  TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    role       TEXT COLLATE "C" NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at TEXT COLLATE "C" NOT NULL,
    PRIMARY KEY (user_id, tenant_id)
);

CREATE INDEX memberships_by_tenant ON memberships (tenant_id, user_id);

-- Tokens are shown once and stored as SHA-256 digests. Operator tokens have no tenant;
-- personal tokens act for their user in one tenant.
CREATE TABLE api_tokens (
    id           TEXT COLLATE "C" PRIMARY KEY,
    user_id      TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id    TEXT COLLATE "C" REFERENCES tenants (id),
    kind         TEXT COLLATE "C" NOT NULL CHECK (kind IN ('operator', 'personal')),
    token_sha256 TEXT COLLATE "C" NOT NULL UNIQUE,
    created_at   TEXT COLLATE "C" NOT NULL,
    last_used_at TEXT COLLATE "C",
    revoked_at   TEXT COLLATE "C",
    CHECK ((kind = 'operator') = (tenant_id IS NULL))
);

CREATE INDEX api_tokens_by_user ON api_tokens (user_id);
