-- API tokens get a name (what the person uses it for) and an access: a read-only token may
-- only read. Existing tokens keep working as they did: read and write, unnamed.
ALTER TABLE api_tokens ADD COLUMN name TEXT COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN access TEXT COLLATE "C" NOT NULL DEFAULT 'read_write'
    CHECK (access IN ('read_only', 'read_write'));
