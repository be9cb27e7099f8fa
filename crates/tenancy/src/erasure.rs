//! The erasure ledger (GDPR Art. 17) and exclusive access to a tenant file for erasing in it.
//!
//! When a person is erased, [`Erasures::record`] writes one row to `control.db`'s `erasures`
//! table naming them by a **keyed hash** of their account id (HMAC-SHA256 under a key derived
//! from the master key: [`Erasures::subject_of`]), never by email, with the tenants erasure
//! reaches and when. Backups taken before the erasure still hold the person until retention
//! removes them; every restore of a tenant backup (in place, as a clone, a migration rollback)
//! calls [`Erasures::replay`] on the restored file *before* it is switched in, which hashes
//! each member of that file and forgets those the ledger names (through the product's
//! [`TenantSchema::forget`]). So an erased person never comes back from a backup, and the
//! ledger itself says nothing about who they were to anyone without the master key.
//!
//! Erasing in a file ([`Erasures::in_file`]) takes the tenant's exclusive lease (in-flight
//! requests finish, new ones wait out the few milliseconds), opens the file alone with
//! `secure_delete` on, runs the product's statements, then checkpoints with `TRUNCATE`: with
//! no other connection open the checkpoint always completes, so no old page survives in the
//! file or its WAL. It works the same for active, suspended and soft-deleted tenants.

use std::collections::HashSet;
use std::path::Path;

use rusqlite::Connection;
use serde::Serialize;
use silo_storage::sqlite::{self, OpenMode};
use sqlx::migrate::Migration;

use crate::control::{Tenant, TenantStatus};
use crate::{Error, Result, Tenancy};
use silo_core::db;
use silo_core::{TenantId, Timestamp};

/// Forgets the people `is_erased` names (by account id) in an open tenant file; returns how
/// many it found. Written by the product that owns the tenant schema.
pub type Forget = fn(&mut Connection, &dyn Fn(&str) -> bool) -> rusqlite::Result<usize>;

/// Brings a file's member rows to the tenant's current members (those not listed are marked
/// as gone at the given time, the process clock's now); returns how many rows changed. Written
/// by the product that owns the tenant schema.
pub type Reconcile =
    fn(&mut Connection, &[crate::members::CurrentMember], &Timestamp) -> rusqlite::Result<usize>;

/// What tenancy needs of the product's tenant schema, handed to [`Tenancy::open`]: its
/// migrations (applied to every file), how to forget an erased person in a file (replayed by
/// every restore), and how to bring a restored file's members up to date.
#[derive(Clone, Copy)]
pub struct TenantSchema {
    /// The tenant migrations, in order.
    pub migrations: &'static [Migration],
    /// Forgets erased people in a file.
    pub forget: Forget,
    /// Brings a file's member rows to the current members.
    pub reconcile: Reconcile,
}

/// The purpose the ledger's hashing key is derived for (from the master key).
const LEDGER_PURPOSE: &str = "erasure-ledger";

/// One person's erasure, as the ledger holds it.
#[derive(Clone, Debug, Serialize)]
pub struct Erasure {
    /// Keyed hash of the erased account id.
    pub subject: String,
    /// The job that carries it out.
    pub job_id: Option<String>,
    /// Tenant id → what erasure did there (`"pending"` until done).
    pub tenants: serde_json::Value,
    /// When it was requested.
    pub requested_at: Timestamp,
    /// When every part of it was done.
    pub completed_at: Option<Timestamp>,
}

/// The erasure ledger (from [`Tenancy::erasures`]).
#[derive(Clone)]
pub struct Erasures(pub(crate) Tenancy);

impl Erasures {
    /// The keyed hash naming the person with account id `user_id` in the ledger and in audit
    /// entries.
    pub async fn subject_of(&self, user_id: &str) -> Result<String> {
        Ok(self.key().await?.mac_hex(format!("user:{user_id}").as_bytes()))
    }

    /// The keyed hash of an address (lower-cased), so a repeated request for an erased person
    /// is recognised without keeping the address.
    pub async fn email_hash(&self, email: &str) -> Result<String> {
        Ok(self.key().await?.mac_hex(format!("email:{}", email.trim().to_lowercase()).as_bytes()))
    }

    async fn key(&self) -> Result<silo_storage::crypto::DataKey> {
        Ok(self.0.master_key().await?.derive(LEDGER_PURPOSE))
    }

    /// Records an erasure (once per person: a repeat keeps the first request's time) and the
    /// tenants it reaches, each `"pending"` until [`Erasures::tenant_done`].
    pub async fn record(
        &self,
        subject: &str,
        email_hash: &str,
        job_id: &str,
        tenants: &[TenantId],
    ) -> Result<Erasure> {
        let pending: serde_json::Map<String, serde_json::Value> =
            tenants.iter().map(|t| (t.to_string(), serde_json::json!("pending"))).collect();
        let mut tx = self.0.control().writer().begin().await?;
        db::query(
            "INSERT INTO erasures (subject, email_hash, job_id, requested_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (subject) DO NOTHING",
        )
        .bind(subject)
        .bind(email_hash)
        .bind(job_id)
        .bind(self.0.control().now().as_str().to_owned())
        .execute(&mut *tx)
        .await?;
        // Tenants joined since an earlier attempt are added; outcomes already recorded stay.
        db::query("UPDATE erasures SET tenants = json_patch(?2, tenants) WHERE subject = ?1")
            .bind(subject)
            .bind(serde_json::Value::Object(pending).to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.get(subject).await?.ok_or_else(|| Error::NotFound(format!("erasure {subject}")))
    }

    /// Records what erasure did in one tenant.
    pub async fn tenant_done(
        &self,
        subject: &str,
        tenant: TenantId,
        outcome: &serde_json::Value,
    ) -> Result<()> {
        db::query("UPDATE erasures SET tenants = json_set(tenants, '$.' || ?2, json(?3)) WHERE subject = ?1")
            .bind(subject)
            .bind(format!("\"{tenant}\""))
            .bind(outcome.to_string())
            .execute(self.0.control().writer())
            .await?;
        Ok(())
    }

    /// Marks an erasure complete at `now` inside the caller's transaction (the one that
    /// removes the person's control-plane records, so both land or neither).
    pub async fn complete_in(conn: &mut db::Conn, now: &Timestamp, subject: &str) -> Result<()> {
        db::query("UPDATE erasures SET completed_at = coalesce(completed_at, ?2) WHERE subject = ?1")
            .bind(subject)
            .bind(now.as_str())
            .execute(conn)
            .await?;
        Ok(())
    }

    /// The erasure of `subject`, if any.
    pub async fn get(&self, subject: &str) -> Result<Option<Erasure>> {
        let row = db::query("SELECT * FROM erasures WHERE subject = ?1")
            .bind(subject)
            .fetch_optional(self.0.control().writer())
            .await?;
        row.as_ref().map(erasure).transpose()
    }

    /// The erasure of whoever had the address with this keyed hash, if any.
    pub async fn by_email_hash(&self, email_hash: &str) -> Result<Option<Erasure>> {
        let row =
            db::query("SELECT * FROM erasures WHERE email_hash = ?1 ORDER BY requested_at DESC LIMIT 1")
                .bind(email_hash)
                .fetch_optional(self.0.control().writer())
                .await?;
        row.as_ref().map(erasure).transpose()
    }

    /// Every erased person's keyed hash.
    pub async fn subjects(&self) -> Result<HashSet<String>> {
        let rows: Vec<String> =
            db::query_scalar("SELECT subject FROM erasures").fetch_all(self.0.control().writer()).await?;
        Ok(rows.into_iter().collect())
    }

    /// Runs `erase` on the tenant's file with the file to itself: under the tenant's lease,
    /// on a connection of its own with `secure_delete` on, then a `TRUNCATE` checkpoint (see
    /// the module docs). A purged tenant has no file: `None`. The tenant is marked changed,
    /// so the next backup holds the erased state.
    pub async fn in_file<T: Send + 'static>(
        &self,
        tenant: &Tenant,
        erase: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<Option<T>> {
        if tenant.status == TenantStatus::Deleted {
            return Ok(None);
        }
        let path = self.0.tenant_path(tenant)?;
        // Copies of the file a killed process left behind would keep the person.
        self.0.sweep_scratch();
        crate::scratch::sweep_restores(&path);
        let lease = self.0.cache().lease(tenant.id).await?;
        let tuning = self.0.settings().tenant_tuning();
        let done = tokio::task::spawn_blocking(move || -> Result<T> {
            let mut conn = sqlite::open_sync(&path, tuning, OpenMode::Existing)?;
            let value = erase_alone(&mut conn, erase)?;
            conn.close()?;
            Ok(value)
        })
        .await
        .expect("an erasure task panicked");
        drop(lease);
        if done.is_ok() {
            self.0.cache().changes().mark(tenant.id);
        }
        done.map(Some)
    }

    /// Forgets every person the ledger names in a restored file (`path`, not yet serving):
    /// the step every restore takes before switching the file in. Returns how many people
    /// were forgotten.
    pub async fn replay(&self, path: &Path) -> Result<usize> {
        let subjects = self.subjects().await?;
        if subjects.is_empty() {
            return Ok(0);
        }
        let key = self.key().await?;
        let forget = self.0.schema().forget;
        let (path, tuning) = (path.to_owned(), self.0.settings().tenant_tuning());
        tokio::task::spawn_blocking(move || -> Result<usize> {
            let mut conn = sqlite::open_sync(&path, tuning, OpenMode::Existing)?;
            let is_erased =
                |user_id: &str| subjects.contains(&key.mac_hex(format!("user:{user_id}").as_bytes()));
            let forgotten = erase_alone(&mut conn, |conn| forget(conn, &is_erased))?;
            conn.close()?;
            Ok(forgotten)
        })
        .await
        .expect("a ledger replay panicked")
    }
}

/// `secure_delete` on, `erase`, then a `TRUNCATE` checkpoint (the connection is the file's
/// only one, so it completes).
fn erase_alone<T>(
    conn: &mut Connection,
    erase: impl FnOnce(&mut Connection) -> rusqlite::Result<T>,
) -> Result<T> {
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    let value = erase(conn)?;
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    if busy != 0 {
        return Err(Error::Unavailable("the tenant file's WAL could not be truncated".into()));
    }
    Ok(value)
}

fn erasure(row: &db::Row) -> Result<Erasure> {
    let tenants: String = row.try_get("tenants")?;
    Ok(Erasure {
        subject: row.try_get("subject")?,
        job_id: row.try_get("job_id")?,
        tenants: serde_json::from_str(&tenants).unwrap_or_default(),
        requested_at: row.try_get("requested_at")?,
        completed_at: row.try_get("completed_at")?,
    })
}
