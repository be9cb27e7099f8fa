-- A backup restored as a new tenant is held: suspended, and shown to none of the members it
-- copied, until an operator releases it (resumes it). It then joins its members' workspaces.
ALTER TABLE tenants ADD COLUMN held BOOLEAN NOT NULL DEFAULT FALSE;
-- The status a tenant had when it was deleted: bringing it back returns it there (a suspended
-- or held tenant comes back suspended, not active).
ALTER TABLE tenants ADD COLUMN deleted_from TEXT COLLATE "C" CHECK (deleted_from IN ('active', 'suspended'));
-- Whether the workspace's owner deleted it (they may bring it back) or the operators did
-- (only they may).
ALTER TABLE tenants ADD COLUMN deleted_by_owner BOOLEAN NOT NULL DEFAULT FALSE;
