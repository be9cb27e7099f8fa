-- Durable jobs: long fleet and tenant operations (fleet backup, export, erasure, purge, move)
-- run as jobs that survive a killed process. A worker claims a job with a lease and renews it
-- while it works; a job whose lease ran out (its worker died) is claimed again. Each step of a
-- job is idempotent, so a job taken up again finishes once in effect; only the worker holding
-- the lease can record the outcome.
CREATE TABLE jobs (
    id             TEXT COLLATE "C" PRIMARY KEY,                 -- UUID v7
    kind           TEXT COLLATE "C" NOT NULL,                    -- what runs it: 'fleet.backup', 'tenant.export', …
    payload        TEXT COLLATE "C" NOT NULL,                    -- JSON input
    status         TEXT COLLATE "C" NOT NULL,                    -- queued | running | done | failed | cancelled
    attempts       BIGINT NOT NULL DEFAULT 0,       -- claims so far
    max_attempts   BIGINT NOT NULL,                 -- then dead-lettered (status 'failed')
    run_after      TEXT COLLATE "C" NOT NULL,                    -- not claimed before (retry backoff)
    lease_owner    TEXT COLLATE "C",                             -- the worker holding it while running
    lease_until    TEXT COLLATE "C",                             -- claimable again after this
    progress_done  BIGINT NOT NULL DEFAULT 0,
    progress_total BIGINT,
    result         TEXT COLLATE "C",                             -- JSON output when done
    last_error     TEXT COLLATE "C",
    created_by     TEXT COLLATE "C" NOT NULL,
    created_at     TEXT COLLATE "C" NOT NULL,
    updated_at     TEXT COLLATE "C" NOT NULL,
    finished_at    TEXT COLLATE "C"
);

CREATE INDEX jobs_claimable ON jobs (status, run_after);
CREATE INDEX jobs_by_kind ON jobs (kind, created_at);
