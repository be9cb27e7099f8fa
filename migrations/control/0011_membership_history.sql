-- Membership history (silo-accounts): every workspace an account has ever belonged to, kept by
-- triggers on `memberships` so no path that adds or removes a member can forget it. Erasing a
-- person reaches every workspace they ever wrote in (a member who left keeps their row in the
-- tenant file, marked as gone), and the exports of those workspaces.
CREATE TABLE membership_history (
    user_id   TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    joined_at TEXT NOT NULL,                  -- first joined
    left_at   TEXT,                           -- last left; NULL while a member
    PRIMARY KEY (user_id, tenant_id)
) STRICT;

CREATE INDEX membership_history_by_tenant ON membership_history (tenant_id, user_id);

CREATE TRIGGER memberships_history_insert AFTER INSERT ON memberships BEGIN
    INSERT INTO membership_history (user_id, tenant_id, joined_at) VALUES (new.user_id, new.tenant_id, new.created_at)
    ON CONFLICT (user_id, tenant_id) DO UPDATE SET left_at = NULL;
END;

CREATE TRIGGER memberships_history_delete AFTER DELETE ON memberships BEGIN
    UPDATE membership_history SET left_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')
    WHERE user_id = old.user_id AND tenant_id = old.tenant_id;
END;

INSERT INTO membership_history (user_id, tenant_id, joined_at)
SELECT user_id, tenant_id, created_at FROM memberships;
