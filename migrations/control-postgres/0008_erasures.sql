-- The erasure ledger: one row per person erased (GDPR Art. 17), named by a keyed hash of their
-- account id (HMAC-SHA256 under a key derived from the master key), never by email. Every
-- restore of a tenant backup replays it, so an erased person never comes back from a backup.
CREATE TABLE erasures (
    subject      TEXT COLLATE "C" PRIMARY KEY,                  -- keyed hash of the account id
    email_hash   TEXT COLLATE "C" NOT NULL,                     -- keyed hash of the address (a repeat request finds it)
    job_id       TEXT COLLATE "C",                              -- the erasure job
    tenants      TEXT COLLATE "C" NOT NULL DEFAULT '{}' CHECK (json_valid(tenants)), -- tenant id -> outcome
    requested_at TEXT COLLATE "C" NOT NULL,
    completed_at TEXT COLLATE "C"
);

CREATE INDEX erasures_by_email ON erasures (email_hash);
