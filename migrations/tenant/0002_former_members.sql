-- Former members keep their row: removing or leaving marks it `left_at` instead of deleting it,
-- so tasks, comments and activity keep their author ("Dave (left)") and a later erasure of that
-- person finds every row they wrote. Joining again clears the mark.
ALTER TABLE members ADD COLUMN left_at TEXT;

CREATE INDEX members_current ON members (id) WHERE left_at IS NULL;

-- Work is not handed to someone who left (their old assignments stay, shown as "(left)").
CREATE TRIGGER tasks_assignee_current_insert BEFORE INSERT ON tasks
WHEN new.assignee_id IS NOT NULL AND (SELECT left_at FROM members WHERE id = new.assignee_id) IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'the assignee has left the workspace');
END;
CREATE TRIGGER tasks_assignee_current_update BEFORE UPDATE OF assignee_id ON tasks
WHEN new.assignee_id IS NOT old.assignee_id AND new.assignee_id IS NOT NULL
    AND (SELECT left_at FROM members WHERE id = new.assignee_id) IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'the assignee has left the workspace');
END;
