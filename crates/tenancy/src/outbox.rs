//! The outbox: emails Silo sends (invitations, password resets) are written to the control
//! plane and logged first, so a request never waits on (or fails with) a mail server. When
//! `[smtp]` names a host, `silo serve` delivers them ([`Mailer`], [`Tenancy::deliver_outbox`]),
//! retrying failures with exponential backoff (1 min, 2, 4, … at most an hour) up to
//! [`MAX_ATTEMPTS`] times and recording the last error. Without SMTP they stay in the outbox,
//! where operators (and tests) read them.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;

use crate::config::SmtpSettings;
use crate::{Error, Result, Tenancy};

/// Delivery attempts before an email is left alone (its error stays recorded).
pub const MAX_ATTEMPTS: i64 = 10;

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
    /// Time delivered (UTC), if it was.
    pub sent_at: Option<String>,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// The last delivery error.
    pub error: Option<String>,
}

/// An SMTP connection configuration (lettre), built from `[smtp]`.
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    host: String,
}

impl Mailer {
    /// The mailer `[smtp]` describes, or `None` when no host is set.
    pub fn from_settings(smtp: &SmtpSettings) -> Result<Option<Self>> {
        let Some(host) = smtp.host.as_deref().map(str::trim).filter(|h| !h.is_empty()) else {
            return Ok(None);
        };
        let config = |e: lettre::transport::smtp::Error| Error::Config(format!("smtp: {e}"));
        let mut builder = match smtp.tls.as_str() {
            "starttls" => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(host).map_err(config)?,
            "tls" => AsyncSmtpTransport::<Tokio1Executor>::relay(host).map_err(config)?,
            "none" => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host),
            other => {
                return Err(Error::Config(format!("smtp.tls must be starttls, tls or none, not `{other}`")));
            }
        }
        .port(smtp.port)
        .timeout(Some(Duration::from_secs(20)));
        if let (Some(user), Some(password)) = (&smtp.username, &smtp.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        let from = smtp.from.parse().map_err(|e| Error::Config(format!("smtp.from `{}`: {e}", smtp.from)))?;
        Ok(Some(Self { transport: builder.build(), from, host: host.to_owned() }))
    }

    /// The server it sends through.
    pub fn host(&self) -> &str {
        &self.host
    }

    async fn send(&self, email: &OutboxEmail) -> std::result::Result<(), String> {
        let to: Mailbox = email.recipient.parse().map_err(|e| format!("bad recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&email.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(email.body.clone())
            .map_err(|e| e.to_string())?;
        self.transport.send(message).await.map(drop).map_err(|e| e.to_string())
    }
}

/// What one delivery pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Emails the server accepted.
    pub sent: usize,
    /// Emails that failed this time (they are retried later).
    pub failed: usize,
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
            "SELECT id, created_at, recipient, subject, body, sent_at, attempts, error FROM outbox
             WHERE ?1 IS NULL OR recipient = ?1 ORDER BY id DESC LIMIT ?2",
        )
        .bind(recipient)
        .bind(limit)
        .fetch_all(self.control().reader())
        .await?;
        Ok(emails)
    }

    /// Sends up to `batch` due emails through `mailer`, recording each outcome.
    pub async fn deliver_outbox(&self, mailer: &Mailer, batch: i64) -> Result<Delivery> {
        let due: Vec<OutboxEmail> = sqlx::query_as(concat!(
            "SELECT id, created_at, recipient, subject, body, sent_at, attempts, error FROM outbox
             WHERE sent_at IS NULL AND attempts < ? AND (next_attempt_at IS NULL OR next_attempt_at <= ",
            crate::now!(),
            ") ORDER BY id LIMIT ?"
        ))
        .bind(MAX_ATTEMPTS)
        .bind(batch)
        .fetch_all(self.control().reader())
        .await?;
        let mut delivery = Delivery::default();
        for email in due {
            match mailer.send(&email).await {
                Ok(()) => {
                    sqlx::query(concat!(
                        "UPDATE outbox SET sent_at = ",
                        crate::now!(),
                        ", attempts = attempts + 1, error = NULL WHERE id = ?"
                    ))
                    .bind(email.id)
                    .execute(self.control().writer())
                    .await?;
                    delivery.sent += 1;
                }
                Err(error) => {
                    let backoff_minutes = 1i64 << email.attempts.clamp(0, 6);
                    sqlx::query(
                        "UPDATE outbox SET attempts = attempts + 1, error = ?,
                         next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', ?) WHERE id = ?",
                    )
                    .bind(&error)
                    .bind(format!("+{} minutes", backoff_minutes.min(60)))
                    .bind(email.id)
                    .execute(self.control().writer())
                    .await?;
                    tracing::warn!(email = email.id, to = %email.recipient, attempt = email.attempts + 1, error, "email delivery failed");
                    delivery.failed += 1;
                }
            }
        }
        Ok(delivery)
    }

    /// Delivers the outbox every `every` until the process ends (run by `silo serve`).
    pub async fn run_mailer(self, mailer: Mailer, every: Duration) {
        tracing::info!(host = mailer.host(), "delivering the outbox over SMTP");
        loop {
            match self.deliver_outbox(&mailer, 50).await {
                Ok(d) if d.sent + d.failed > 0 => {
                    tracing::info!(sent = d.sent, failed = d.failed, "outbox delivery")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox delivery pass failed"),
            }
            tokio::time::sleep(every).await;
        }
    }
}
