-- Backups (silo-tenancy): how far each snapshot's chain of continuous backup reaches. Set when
-- a newer snapshot closes the chain: that snapshot's time when every commit before it was
-- shipped, else the last commit that was. NULL: the chain is open (the tenant's newest
-- backup), or there is none (continuous backup was off): then the snapshot covers its own
-- moment only. A restore to a moment past its backup's chain (retention removed the backups
-- in between) is refused instead of quietly landing earlier.
ALTER TABLE backups ADD COLUMN chain_until TEXT COLLATE "C";
