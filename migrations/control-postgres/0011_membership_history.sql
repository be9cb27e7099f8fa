-- Membership history (silo-accounts): every workspace an account has ever belonged to, kept by
-- triggers on `memberships` so no path that adds or removes a member can forget it. Erasing a
-- person reaches every workspace they ever wrote in (a member who left keeps their row in the
-- tenant file, marked as gone), and the exports of those workspaces.
CREATE TABLE membership_history (
    user_id   TEXT COLLATE "C" NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    joined_at TEXT COLLATE "C" NOT NULL,                  -- first joined
    left_at   TEXT COLLATE "C",                           -- last left; NULL while a member
    PRIMARY KEY (user_id, tenant_id)
);

CREATE INDEX membership_history_by_tenant ON membership_history (tenant_id, user_id);

CREATE FUNCTION memberships_history_joined() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO membership_history (user_id, tenant_id, joined_at) VALUES (NEW.user_id, NEW.tenant_id, NEW.created_at)
    ON CONFLICT (user_id, tenant_id) DO UPDATE SET left_at = NULL;
    RETURN NULL;
END $$;

CREATE TRIGGER memberships_history_insert AFTER INSERT ON memberships
FOR EACH ROW EXECUTE FUNCTION memberships_history_joined();

CREATE FUNCTION memberships_history_left() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE membership_history SET left_at = to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
    WHERE user_id = OLD.user_id AND tenant_id = OLD.tenant_id;
    RETURN NULL;
END $$;

CREATE TRIGGER memberships_history_delete AFTER DELETE ON memberships
FOR EACH ROW EXECUTE FUNCTION memberships_history_left();

INSERT INTO membership_history (user_id, tenant_id, joined_at)
SELECT user_id, tenant_id, created_at FROM memberships;
