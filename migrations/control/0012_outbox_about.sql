-- The outbox (silo-accounts): an email that speaks of an account other than its recipient (an
-- invitation names its inviter) records that account, so erasing the person blanks the email
-- by id, whatever name they had when it was written.
ALTER TABLE outbox ADD COLUMN about_user_id TEXT;

CREATE INDEX outbox_about ON outbox (about_user_id) WHERE about_user_id IS NOT NULL;
