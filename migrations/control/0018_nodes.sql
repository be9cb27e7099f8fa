-- The servers that use this control plane (silo-tenancy): each `silo serve` registers under
-- its node name when it starts, renews its heartbeat while it runs and leaves when it stops.
-- Until Silo runs several nodes, a second server under another name is refused while the
-- first's heartbeat is fresh.
CREATE TABLE nodes (
    name         TEXT PRIMARY KEY,                 -- `[cluster] node` (the host's name by default)
    advertise    TEXT NOT NULL,                    -- where it is reached (`[cluster] advertise`)
    started_at   TEXT NOT NULL,
    heartbeat_at TEXT NOT NULL                     -- gone once this is older than three heartbeats
) STRICT;
