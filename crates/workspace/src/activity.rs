//! The workspace's activity feed: who did what, written in the same transaction as the change.

use rusqlite::{Connection, params};
use serde::Serialize;

use crate::{Result, Run};
use silo_core::Timestamp;
use silo_tenancy::Turn;

/// One entry of the feed.
#[derive(Clone, Debug, Serialize)]
pub struct Activity {
    /// Time (UTC).
    pub at: Timestamp,
    /// Who (display name), if still a member.
    pub actor: Option<String>,
    /// What (`task.create`, …).
    pub verb: String,
    /// Kind of object.
    pub subject_kind: String,
    /// Its id.
    pub subject_id: Option<i64>,
    /// A short description (a title, a name; a comment's first words).
    pub summary: String,
    /// The title of the task or project it is about, as it was then (for a task or project
    /// verb, the summary; for a comment, the task's title when it was written, if recorded).
    pub subject_title: Option<String>,
    /// Whether that task or project still exists under that title (ids can be reused after
    /// the newest is deleted: a link is only given to the same thing).
    pub subject_exists: bool,
}

impl Activity {
    /// The entry as a sentence after its actor's name: what they did, to what (the title,
    /// shown emphasised), and what they wrote (a comment) — "commented on" / "Launch plan" /
    /// "Looks good".
    pub fn sentence(&self) -> (&'static str, String, Option<&str>) {
        let subject = || self.subject_title.clone().unwrap_or_else(|| self.summary.clone());
        let title = |t: &Option<String>| t.clone().unwrap_or_else(|| "a task".to_owned());
        match self.verb.as_str() {
            "task.create" => ("created the task", self.summary.clone(), None),
            "task.update" => ("updated", subject(), None),
            "task.delete" => ("deleted the task", self.summary.clone(), None),
            "project.create" => ("created the project", self.summary.clone(), None),
            "project.delete" => ("deleted the project", self.summary.clone(), None),
            "comment.create" => ("commented on", title(&self.subject_title), Some(self.summary.as_str())),
            _ => ("changed", subject(), None),
        }
    }
}

/// Appends an entry made `at`; called inside the transaction that makes the change. `title` is
/// the subject's title when the summary is something else (a comment's text).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    conn: &Connection,
    at: &str,
    actor: Option<i64>,
    verb: &str,
    subject_kind: &str,
    subject_id: i64,
    summary: &str,
    title: Option<&str>,
) -> rusqlite::Result<()> {
    let detail = match title {
        Some(title) => serde_json::json!({ "summary": summary, "title": title }),
        None => serde_json::json!({ "summary": summary }),
    }
    .to_string();
    conn.prepare_cached(
        "INSERT INTO activity (actor_id, verb, subject_kind, subject_id, detail, at) VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![actor, verb, subject_kind, subject_id, detail, at])?;
    Ok(())
}

/// The newest entries.
pub fn recent(db: &Turn, limit: i64) -> Result<Vec<Activity>> {
    db.run(|conn| {
        let mut statement = conn.prepare_cached(
            "SELECT a.at, m.display_name || CASE WHEN m.left_at IS NULL THEN '' ELSE ' (left)' END, a.verb, a.subject_kind, a.subject_id,
                    coalesce(json_extract(a.detail, '$.summary'), ''), json_extract(a.detail, '$.title'),
                    coalesce(t.title, p.name)
             FROM activity a LEFT JOIN members m ON m.id = a.actor_id
             LEFT JOIN tasks t ON a.subject_kind = 'task' AND t.id = a.subject_id
             LEFT JOIN projects p ON a.subject_kind = 'project' AND p.id = a.subject_id
             ORDER BY a.id DESC LIMIT ?",
        )?;
        let rows = statement.query_map([limit], |r| {
            let (verb, summary): (String, String) = (r.get(2)?, r.get(5)?);
            // What it was called then: the comment's recorded task title, else the summary (a
            // task's or project's own entries); and whether it is still there under that name.
            let then: Option<String> = if verb == "comment.create" { r.get(6)? } else { Some(summary.clone()) };
            let now: Option<String> = r.get(7)?;
            Ok(Activity {
                at: r.get(0)?,
                actor: r.get(1)?,
                subject_kind: r.get(3)?,
                subject_id: r.get(4)?,
                subject_exists: now.is_some() && now == then,
                subject_title: then,
                verb,
                summary,
            })
        })?;
        rows.collect()
    })
}

/// Time of the newest entry, if any (the admin console's "last activity").
pub fn last_at(db: &Turn) -> Result<Option<String>> {
    db.run(|conn| conn.prepare_cached("SELECT max(at) FROM activity")?.query_row([], |r| r.get(0)))
}
