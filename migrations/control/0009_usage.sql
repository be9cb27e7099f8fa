-- Usage metering (silo-billing): one row per tenant and UTC day. `requests` is added to every
-- minute from the in-memory counters; `storage_bytes` and `seats` are the last values seen
-- that day (at each flush the tenant had requests in).
CREATE TABLE usage_daily (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    day           TEXT NOT NULL,                     -- YYYY-MM-DD (UTC)
    requests      INTEGER NOT NULL DEFAULT 0,
    storage_bytes INTEGER NOT NULL DEFAULT 0,
    seats         INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, day)
) STRICT;
