-- The tenant workspace: members, projects, tasks, comments, full-text search and activity.
-- Applied to every tenant file; DDL is transactional, so a failure leaves the file as it was.

CREATE TABLE members (
    id           INTEGER PRIMARY KEY,
    user_id      TEXT NOT NULL UNIQUE,            -- the global account (control plane) id
    email        TEXT NOT NULL,
    display_name TEXT NOT NULL,
    role         TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    joined_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE TABLE projects (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    description TEXT NOT NULL DEFAULT '',
    created_by  INTEGER REFERENCES members (id) ON DELETE SET NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    archived_at TEXT
) STRICT;

CREATE TABLE tasks (
    id          INTEGER PRIMARY KEY,
    project_id  INTEGER NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    title       TEXT NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    body        TEXT NOT NULL DEFAULT '',
    status      TEXT NOT NULL DEFAULT 'todo' CHECK (status IN ('todo', 'doing', 'done')),
    assignee_id INTEGER REFERENCES members (id) ON DELETE SET NULL,
    due_date    TEXT CHECK (due_date IS NULL OR date(due_date) = due_date),
    created_by  INTEGER REFERENCES members (id) ON DELETE SET NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE INDEX tasks_by_project ON tasks (project_id, status, id);
CREATE INDEX tasks_by_assignee ON tasks (assignee_id) WHERE assignee_id IS NOT NULL;

CREATE TABLE comments (
    id         INTEGER PRIMARY KEY,
    task_id    INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
    author_id  INTEGER REFERENCES members (id) ON DELETE SET NULL,
    body       TEXT NOT NULL CHECK (length(body) >= 1),
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
) STRICT;

CREATE INDEX comments_by_task ON comments (task_id, id);

-- One full-text index over tasks and comments. Rowids interleave the two sources
-- (task n -> 2n, comment n -> 2n + 1) so the triggers below update and delete by rowid
-- instead of scanning the index.
CREATE VIRTUAL TABLE search_index USING fts5 (
    kind UNINDEXED,       -- 'task' | 'comment'
    task_id UNINDEXED,    -- the task the hit belongs to
    title,
    body,
    tokenize = 'porter unicode61 remove_diacritics 2'
);

CREATE TRIGGER tasks_search_insert AFTER INSERT ON tasks BEGIN
    INSERT INTO search_index (rowid, kind, task_id, title, body) VALUES (new.id * 2, 'task', new.id, new.title, new.body);
END;
CREATE TRIGGER tasks_search_update AFTER UPDATE OF title, body ON tasks BEGIN
    UPDATE search_index SET title = new.title, body = new.body WHERE rowid = new.id * 2;
END;
CREATE TRIGGER tasks_search_delete AFTER DELETE ON tasks BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 2;
END;

CREATE TRIGGER comments_search_insert AFTER INSERT ON comments BEGIN
    INSERT INTO search_index (rowid, kind, task_id, title, body) VALUES (new.id * 2 + 1, 'comment', new.task_id, '', new.body);
END;
CREATE TRIGGER comments_search_update AFTER UPDATE OF body ON comments BEGIN
    UPDATE search_index SET body = new.body WHERE rowid = new.id * 2 + 1;
END;
CREATE TRIGGER comments_search_delete AFTER DELETE ON comments BEGIN
    DELETE FROM search_index WHERE rowid = old.id * 2 + 1;
END;

CREATE TABLE activity (
    id           INTEGER PRIMARY KEY,
    at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    actor_id     INTEGER REFERENCES members (id) ON DELETE SET NULL,
    verb         TEXT NOT NULL,                   -- 'task.create', 'comment.create', ...
    subject_kind TEXT NOT NULL,
    subject_id   INTEGER,
    detail       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(detail))
) STRICT;

CREATE INDEX activity_by_time ON activity (id DESC);
