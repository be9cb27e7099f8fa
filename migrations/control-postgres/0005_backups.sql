-- Backups: per-tenant data keys (wrapped by the master key) and the backup catalogue.

-- Destroying a row makes every backup of that tenant unreadable, wherever copies survive.
CREATE TABLE tenant_keys (
    tenant_id  TEXT COLLATE "C" PRIMARY KEY REFERENCES tenants (id),
    wrapped    BYTEA NOT NULL,                     -- nonce || AES-256-GCM(master, data key) || tag
    created_at TEXT COLLATE "C" NOT NULL
);

-- A row exists only once its object is fully stored (object first, row second), so a killed
-- backup leaves at most an orphan object, which `silo backup prune` removes.
CREATE TABLE backups (
    id             TEXT COLLATE "C" PRIMARY KEY,              -- UUID v7 (time-ordered)
    tenant_id      TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    created_at     TEXT COLLATE "C" NOT NULL,
    kind           TEXT COLLATE "C" NOT NULL CHECK (kind IN ('scheduled', 'manual', 'pre-migration', 'pre-move')),
    size           BIGINT NOT NULL,              -- bytes of the sealed object
    db_size        BIGINT NOT NULL,              -- bytes of the snapshot before compression
    sha256         TEXT COLLATE "C" NOT NULL,                 -- of the sealed object
    schema_version BIGINT NOT NULL,
    object_key     TEXT COLLATE "C" NOT NULL UNIQUE,
    verified_at    TEXT COLLATE "C",
    verify_error   TEXT COLLATE "C"
);

CREATE INDEX backups_by_tenant ON backups (tenant_id, created_at);
CREATE INDEX backups_by_time ON backups (created_at);
