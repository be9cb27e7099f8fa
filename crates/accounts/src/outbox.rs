//! The outbox: emails Silo sends (invitations, password resets) are written to the control
//! plane and logged first, so a request never waits on (or fails with) a mail server. When
//! `[smtp]` names a host, `silo serve` delivers them ([`Mailer`], [`Outbox::deliver`]),
//! retrying failures with exponential backoff (1 min, 2, 4, … at most an hour) up to
//! [`MAX_ATTEMPTS`] times and recording the last error. Without SMTP they stay in the outbox,
//! where operators (and tests) read them, and each is also written to the log at `info` with
//! its link, since on the embedded default (no SMTP, a loopback bind) the log is where the
//! person at the terminal finds a sign-up confirmation link.
//!
//! **No usable link at rest.** An email that carries a one-time link (sign-up confirmation,
//! password reset, invitation) is stored with `{link}` in its body; the link itself is sealed
//! (AES-256-GCM under a key derived from the master key, which is not in `control.db`) in
//! `link_sealed` and removed once the email is sent or the link expires. A copy of
//! `control.db` therefore holds no link that works, before or after sending.

use std::future::Future;
use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Serialize;

use crate::settings::SmtpSettings;
use crate::{Error, Result};
use silo_core::db;

/// Whom an email speaks of besides its recipient: erasing that person blanks it (by account
/// id, whatever their name was then), purging that workspace deletes it.
#[derive(Clone, Copy, Debug, Default)]
pub struct About<'a> {
    /// An account named in the email (an invitation's inviter).
    pub user: Option<&'a str>,
    /// A workspace named in the email.
    pub tenant: Option<silo_core::TenantId>,
}

/// Delivery attempts before an email is left alone (its error stays recorded).
pub const MAX_ATTEMPTS: i64 = 10;

/// Where an email's one-time link stands in its stored body.
pub const LINK_PLACEHOLDER: &str = "{link}";

/// What replaces the link once it is gone from the outbox.
const LINK_GONE: &str = "(link no longer available: it expired or the email was sent)";

/// The purpose of the key that seals links (derived from the master key).
const LINK_KEY_PURPOSE: &str = "outbox-links";

/// A one-time link for an email: the URL and how long it works.
#[derive(Clone)]
pub struct EmailLink {
    /// The full URL (it carries the secret).
    pub url: String,
    /// How long the link works; the sealed copy is removed after that.
    pub valid_for: Duration,
}

impl std::fmt::Debug for EmailLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailLink").field("url", &"<redacted>").field("valid_for", &self.valid_for).finish()
    }
}

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
    /// Plain-text body; a one-time link stands as `{link}` (see [`Outbox::render`]).
    pub body: String,
    /// Time delivered (UTC), if it was.
    pub sent_at: Option<String>,
    /// Delivery attempts so far.
    pub attempts: i64,
    /// The last delivery error.
    pub error: Option<String>,
    /// The link, sealed, while the email is unsent and the link unexpired.
    #[serde(skip)]
    pub link_sealed: Option<Vec<u8>>,
}

const COLUMNS: &str = "id, created_at, recipient, subject, body, sent_at, attempts, error, link_sealed";

/// What binds a sealed link to its email.
fn link_context(recipient: &str, subject: &str) -> Vec<u8> {
    format!("silo/outbox/v1/{recipient}/{subject}").into_bytes()
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
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let from = smtp.from.parse().map_err(|e| Error::Config(format!("smtp.from `{}`: {e}", smtp.from)))?;
        Ok(Some(Self { transport: builder.build(), from, host: host.to_owned() }))
    }

    /// The server it sends through.
    pub fn host(&self) -> &str {
        &self.host
    }

    async fn send(&self, email: &OutboxEmail, body: String) -> std::result::Result<(), String> {
        let to: Mailbox = email.recipient.parse().map_err(|e| format!("bad recipient: {e}"))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(&email.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body)
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

/// Outgoing mail (from [`crate::Accounts::outbox`]).
#[derive(Clone)]
pub struct Outbox(pub(crate) crate::Accounts);

impl Outbox {
    /// Queues an email without a link (and logs it).
    pub async fn queue(&self, recipient: &str, subject: &str, body: &str, about: About<'_>) -> Result<()> {
        self.enqueue(recipient, subject, body, None, about).await
    }

    /// Queues an email whose `body` carries `link` where [`LINK_PLACEHOLDER`] stands; the link
    /// is stored only sealed, and only until it is sent or expires.
    pub async fn queue_with_link(
        &self,
        recipient: &str,
        subject: &str,
        body: &str,
        link: &EmailLink,
        about: About<'_>,
    ) -> Result<()> {
        debug_assert!(body.contains(LINK_PLACEHOLDER), "the body has a place for the link");
        self.enqueue(recipient, subject, body, Some(link), about).await
    }

    async fn enqueue(
        &self,
        recipient: &str,
        subject: &str,
        body: &str,
        link: Option<&EmailLink>,
        about: About<'_>,
    ) -> Result<()> {
        let sealed = match link {
            Some(link) => {
                Some(self.link_key().await?.seal(link.url.as_bytes(), &link_context(recipient, subject)))
            }
            None => None,
        };
        let now = self.0.now();
        let queued: i64 = db::query_scalar(
            "INSERT INTO outbox (created_at, recipient, subject, body, link_sealed, link_expires_at, about_user_id,
                 about_tenant_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(now.as_str())
        .bind(recipient)
        .bind(subject)
        .bind(body)
        .bind(sealed)
        .bind(link.map(|l| now.plus(l.valid_for).as_str().to_owned()))
        .bind(about.user)
        .bind(about.tenant.map(|t| t.to_string()))
        .fetch_one(self.0.control().writer())
        .await?;
        if self.0.settings().smtp.host.is_some() {
            // The body may carry a secret link: it goes to the mail server, not the log; nor
            // does the address (an erasure cannot reach the log): the outbox row names it.
            tracing::info!(email = queued, subject, "email queued in the outbox");
        } else {
            // No mail server: the log is the delivery (the embedded default's first run reads
            // its sign-up confirmation link here).
            let rendered = body.replace(LINK_PLACEHOLDER, link.map_or(LINK_GONE, |l| l.url.as_str()));
            tracing::info!(to = recipient, subject, body = %rendered, "email (no [smtp] host configured: not sent, shown here)");
        }
        self.forget_expired_links().await
    }

    async fn link_key(&self) -> Result<silo_storage::crypto::DataKey> {
        Ok(self.0.tenancy().master_key().await?.derive(LINK_KEY_PURPOSE))
    }

    /// An email's body with its link in place (while the outbox still holds it).
    pub async fn render(&self, email: &OutboxEmail) -> Result<String> {
        if !email.body.contains(LINK_PLACEHOLDER) {
            return Ok(email.body.clone());
        }
        let link = match &email.link_sealed {
            Some(sealed) => {
                let url = self
                    .link_key()
                    .await?
                    .open(sealed, &link_context(&email.recipient, &email.subject))
                    .map_err(silo_tenancy::Error::from)?;
                String::from_utf8_lossy(&url).into_owned()
            }
            None => LINK_GONE.to_owned(),
        };
        Ok(email.body.replace(LINK_PLACEHOLDER, &link))
    }

    /// Removes the sealed links that expired; an email still unsent by then is not sent.
    pub async fn forget_expired_links(&self) -> Result<()> {
        db::query(
            "UPDATE outbox SET link_sealed = NULL,
                 error = CASE WHEN sent_at IS NULL THEN 'the link expired before the email was sent' ELSE error END
             WHERE link_sealed IS NOT NULL AND link_expires_at <= ?",
        )
        .bind(self.0.now().as_str().to_owned())
        .execute(self.0.control().writer())
        .await?;
        Ok(())
    }

    /// The newest emails, optionally to one recipient.
    pub async fn list(&self, recipient: Option<&str>, limit: i64) -> Result<Vec<OutboxEmail>> {
        let emails = db::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM outbox WHERE ?1 IS NULL OR recipient = ?1 ORDER BY id DESC LIMIT ?2"
        )))
        .bind(recipient)
        .bind(limit)
        .fetch_all(self.0.control().reader())
        .await?;
        Ok(emails)
    }

    /// Sends up to `batch` due emails through `mailer`, recording each outcome; a sent email's
    /// link is removed from the outbox.
    pub async fn deliver(&self, mailer: &Mailer, batch: i64) -> Result<Delivery> {
        self.forget_expired_links().await?;
        let due: Vec<OutboxEmail> = db::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM outbox
             WHERE sent_at IS NULL AND attempts < ?1 AND (next_attempt_at IS NULL OR next_attempt_at <= ?3)
               AND (link_expires_at IS NULL OR link_sealed IS NOT NULL)
             ORDER BY id LIMIT ?2"
        )))
        .bind(MAX_ATTEMPTS)
        .bind(batch)
        .bind(self.0.now().as_str().to_owned())
        .fetch_all(self.0.control().reader())
        .await?;
        let mut delivery = Delivery::default();
        for email in due {
            let body = self.render(&email).await?;
            match mailer.send(&email, body).await {
                Ok(()) => {
                    db::query(
                        "UPDATE outbox SET sent_at = ?, attempts = attempts + 1, error = NULL, link_sealed = NULL
                         WHERE id = ?",
                    )
                    .bind(self.0.now().as_str().to_owned())
                    .bind(email.id)
                    .execute(self.0.control().writer())
                    .await?;
                    delivery.sent += 1;
                }
                Err(error) => {
                    let backoff_minutes = 1i64 << email.attempts.clamp(0, 6);
                    db::query(
                        "UPDATE outbox SET attempts = attempts + 1, error = ?, next_attempt_at = ? WHERE id = ?",
                    )
                    .bind(&error)
                    .bind(self.0.now().plus(std::time::Duration::from_secs(60 * backoff_minutes.min(60) as u64)).as_str().to_owned())
                    .bind(email.id)
                    .execute(self.0.control().writer())
                    .await?;
                    tracing::warn!(
                        email = email.id,
                        attempt = email.attempts + 1,
                        error,
                        "email delivery failed"
                    );
                    delivery.failed += 1;
                }
            }
        }
        Ok(delivery)
    }

    /// Delivers the outbox every `every` until `stop` completes (the application stopping).
    pub async fn run_mailer(self, mailer: Mailer, every: Duration, stop: impl Future<Output = ()>) {
        tracing::info!(host = mailer.host(), "delivering the outbox over SMTP");
        tokio::pin!(stop);
        loop {
            match self.deliver(&mailer, 50).await {
                Ok(d) if d.sent + d.failed > 0 => {
                    tracing::info!(sent = d.sent, failed = d.failed, "outbox delivery")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "outbox delivery pass failed"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = &mut stop => {
                    tracing::info!("outbox delivery stopped");
                    return;
                }
            }
        }
    }
}
