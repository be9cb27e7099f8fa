//! The outbox: emails Silo sends (invitations, password resets) are written to the control
//! plane and to the log. Delivery over SMTP is not built yet; operators read the outbox in
//! the admin console (and tests read it to follow links).

use serde::Serialize;

use crate::{Result, Tenancy};

/// A queued email.
#[derive(Clone, Debug, Serialize, sqlx::FromRow)]
pub struct OutboxEmail {
    /// Sequence number.
    pub id: i64,
    /// Time queued (UTC).
    pub created_at: String,
    /// To.
    pub recipient: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub body: String,
}

impl Tenancy {
    /// Queues an email (and logs that it did, without the body: it may carry a secret link).
    pub async fn queue_email(&self, recipient: &str, subject: &str, body: &str) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO outbox (created_at, recipient, subject, body) VALUES (",
            crate::now!(),
            ", ?, ?, ?)"
        ))
        .bind(recipient)
        .bind(subject)
        .bind(body)
        .execute(self.control().writer())
        .await?;
        tracing::info!(to = recipient, subject, "email queued in the outbox");
        Ok(())
    }

    /// The newest emails, optionally to one recipient.
    pub async fn outbox(&self, recipient: Option<&str>, limit: i64) -> Result<Vec<OutboxEmail>> {
        let emails = sqlx::query_as(
            "SELECT id, created_at, recipient, subject, body FROM outbox
             WHERE ?1 IS NULL OR recipient = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .bind(recipient)
        .bind(limit)
        .fetch_all(self.control().reader())
        .await?;
        Ok(emails)
    }
}
