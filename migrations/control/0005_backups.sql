-- Backups: per-tenant data keys (wrapped by the master key) and the backup catalogue.

-- Destroying a row makes every backup of that tenant unreadable, wherever copies survive.
CREATE TABLE tenant_keys (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants (id),
    wrapped    BLOB NOT NULL,                     -- nonce || AES-256-GCM(master, data key) || tag
    created_at TEXT NOT NULL
) STRICT;

-- A row exists only once its object is fully stored (object first, row second), so a killed
-- backup leaves at most an orphan object, which `silo backup prune` removes.
CREATE TABLE backups (
    id             TEXT PRIMARY KEY,              -- UUID v7 (time-ordered)
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    created_at     TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('scheduled', 'manual', 'pre-migration', 'pre-move')),
    size           INTEGER NOT NULL,              -- bytes of the sealed object
    db_size        INTEGER NOT NULL,              -- bytes of the snapshot before compression
    sha256         TEXT NOT NULL,                 -- of the sealed object
    schema_version INTEGER NOT NULL,
    object_key     TEXT NOT NULL UNIQUE,
    verified_at    TEXT,
    verify_error   TEXT
) STRICT;

CREATE INDEX backups_by_tenant ON backups (tenant_id, created_at);
CREATE INDEX backups_by_time ON backups (created_at);
