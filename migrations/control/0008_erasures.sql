-- The erasure ledger: one row per person erased (GDPR Art. 17), named by a keyed hash of their
-- account id (HMAC-SHA256 under a key derived from the master key), never by email. Every
-- restore of a tenant backup replays it, so an erased person never comes back from a backup.
CREATE TABLE erasures (
    subject      TEXT PRIMARY KEY,                  -- keyed hash of the account id
    email_hash   TEXT NOT NULL,                     -- keyed hash of the address (a repeat request finds it)
    job_id       TEXT,                              -- the erasure job
    tenants      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(tenants)), -- tenant id -> outcome
    requested_at TEXT NOT NULL,
    completed_at TEXT
) STRICT;

CREATE INDEX erasures_by_email ON erasures (email_hash);
