-- Usage metering (silo-billing): one row per tenant and UTC day. `requests` is added to every
-- minute from the in-memory counters; `storage_bytes` and `seats` are the last values seen
-- that day (at each flush the tenant had requests in).
CREATE TABLE usage_daily (
    tenant_id     TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    day           TEXT COLLATE "C" NOT NULL,                     -- YYYY-MM-DD (UTC)
    requests      BIGINT NOT NULL DEFAULT 0,
    storage_bytes BIGINT NOT NULL DEFAULT 0,
    seats         BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
);
