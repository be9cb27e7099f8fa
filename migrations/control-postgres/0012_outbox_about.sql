-- The outbox (silo-accounts): an email that speaks of an account other than its recipient (an
-- invitation names its inviter) records that account, so erasing the person blanks the email
-- by id, whatever name they had when it was written; one that speaks of a workspace (an
-- invitation, a payment reminder) records it, so purging the workspace deletes the email.
ALTER TABLE outbox ADD COLUMN about_user_id TEXT COLLATE "C";
ALTER TABLE outbox ADD COLUMN about_tenant_id TEXT COLLATE "C";

CREATE INDEX outbox_about ON outbox (about_user_id) WHERE about_user_id IS NOT NULL;
CREATE INDEX outbox_about_tenant ON outbox (about_tenant_id) WHERE about_tenant_id IS NOT NULL;
