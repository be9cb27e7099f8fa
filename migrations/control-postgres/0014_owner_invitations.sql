-- An operator provisioning a workspace for an address without an account invites its first
-- owner: an invitation's role may now be 'owner'. (SQLite rebuilds the table; PostgreSQL changes the
-- CHECK in place.)

ALTER TABLE invitations DROP CONSTRAINT invitations_role_check;
ALTER TABLE invitations ADD CONSTRAINT invitations_role_check CHECK (role IN ('owner', 'admin', 'member'));
