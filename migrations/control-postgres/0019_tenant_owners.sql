-- Which server serves each tenant (silo-tenancy's ownership; only when servers share a
-- PostgreSQL control plane). A server may write a tenant's file only while it is the tenant's
-- `node` here and its own lease (`nodes.expires_ms`, renewed with its heartbeat on the
-- database's clock) has not run out; `fence` grows by one with every new owner, so a server
-- that finds another number than the one it took knows it lost the tenant.
CREATE TABLE tenant_owners (
    tenant_id TEXT COLLATE "C" PRIMARY KEY REFERENCES tenants (id),
    node      TEXT COLLATE "C" NOT NULL,
    fence     BIGINT NOT NULL
);
CREATE INDEX tenant_owners_node ON tenant_owners (node);

-- A server's lease, in ms since the Unix epoch on the database's clock: its tenants may be
-- taken over once it has passed.
ALTER TABLE nodes ADD COLUMN expires_ms BIGINT NOT NULL DEFAULT 0;
-- Which data directory the server runs on (`<data_dir>/node-id`): a second machine starting
-- under a name in use is refused.
ALTER TABLE nodes ADD COLUMN data_id TEXT COLLATE "C" NOT NULL DEFAULT '';
-- What the server last reported with its heartbeat: the open tenant files (its load) and
-- the free bytes on its data directory's disk (the console's fleet view; where tenants go).
ALTER TABLE nodes ADD COLUMN open_tenants BIGINT NOT NULL DEFAULT 0;
ALTER TABLE nodes ADD COLUMN free_bytes BIGINT NOT NULL DEFAULT 0;
