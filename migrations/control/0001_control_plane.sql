-- The control plane: which tenants exist, where their file is, and what happened to them.

CREATE TABLE tenants (
    id              TEXT PRIMARY KEY,             -- UUID v7, never reused
    slug            TEXT NOT NULL,
    name            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('active', 'suspended', 'deleting', 'deleted')),
    region          TEXT NOT NULL,
    plan            TEXT NOT NULL,
    schema_version  INTEGER NOT NULL DEFAULT 0,
    migration_error TEXT,                          -- set: quarantined until a migration succeeds
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    deleted_at      TEXT
) STRICT;

-- A slug names one live tenant; a purged tenant's slug may be taken again (with a new id and path).
CREATE UNIQUE INDEX tenants_live_slug ON tenants (slug) WHERE status <> 'deleted';
CREATE INDEX tenants_status ON tenants (status, slug);
CREATE INDEX tenants_region ON tenants (region, slug);

CREATE TABLE audit_log (
    id        INTEGER PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    tenant_id TEXT REFERENCES tenants (id),
    detail    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
) STRICT;

CREATE INDEX audit_log_tenant ON audit_log (tenant_id, id);
