-- The bytes of the tenant files a server of a cluster holds, reported with its heartbeat:
-- with its tenants and free disk, where new and taken-over tenants go (silo-tenancy's room).
ALTER TABLE nodes ADD COLUMN tenant_bytes BIGINT NOT NULL DEFAULT 0;
