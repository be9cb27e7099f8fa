//! `silo export SLUG --out FILE.zip`: everything a tenant owns, in open formats.
//!
//! The zip holds `database.sqlite` (a consistent snapshot, taken with `VACUUM INTO` while the
//! tenant keeps serving), `tables/<table>.json` and `tables/<table>.csv` for every table
//! (FTS5 tables included, with their `rowid`; their internal shadow tables left out), and
//! `manifest.json`: tenant id, schema version, row counts and the SHA-256 of every other
//! member. Every table is read from the snapshot, so the JSON, the CSV and the database agree
//! even while writes go on. The zip is written under a temporary name and renamed into place.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use rusqlite::types::ValueRef;
use serde::Serialize;
use sha2::{Digest, Sha256};
use silo_storage::sqlite;
use zip::write::SimpleFileOptions;

use crate::{Error, Result, Tenancy};
use silo_core::db;
use silo_core::ids::TenantRef;
use silo_core::tokens::hex;
use silo_jobs::Enqueued;

/// What the export-link key is derived for (never reused for another purpose).
const EXPORT_LINK_PURPOSE: &str = "silo export download links v1";

fn link_context(job: &str, expires: u64) -> Vec<u8> {
    format!("export:{job}:{expires}").into_bytes()
}

/// `manifest.json`.
#[derive(Debug, Serialize)]
pub struct Manifest {
    /// Format marker.
    pub format: &'static str,
    /// Tenant id.
    pub tenant_id: String,
    /// Tenant slug at export time.
    pub slug: String,
    /// Schema version of the snapshot.
    pub schema_version: i64,
    /// When the snapshot was taken (UTC).
    pub exported_at: silo_core::Timestamp,
    /// Rows per table.
    pub row_counts: BTreeMap<String, u64>,
    /// SHA-256 of every other member of the zip, by path.
    pub sha256: BTreeMap<String, String>,
    /// How values are written.
    pub notes: &'static str,
    /// How CSV cells that a spreadsheet would run as formulas are written.
    pub csv_formula_guard: &'static str,
}

/// Exports of a tenant (a zip of its data) (from [`Tenancy::exports`]).
#[derive(Clone)]
pub struct Exports(pub(crate) Tenancy);

impl Exports {
    /// Starts an export of `tenant` as a durable job (its zip and download link are the job's
    /// result), within the bounds of `[exports]` (see [`Exports::start_bounded`]).
    pub async fn start(&self, tenant: silo_core::TenantId, actor: &str) -> Result<Enqueued> {
        let row = self.0.tenant(&TenantRef::Id(tenant)).await?;
        // The zip holds the file, compressed, and its tables as JSON and CSV: about its size.
        let estimate = sqlite::database_size(&self.0.tenant_path(&row)?);
        let key = tenant.to_string();
        let payload = serde_json::json!({ "tenant": key });
        let job = silo_jobs::NewJob::new(crate::jobs::TENANT_EXPORT, payload);
        self.start_bounded(job, "$.tenant", &key, estimate, actor).await
    }

    /// Starts an export job (a tenant's, or a person's from the accounts) keyed by the payload's
    /// `key_path` (one workspace, one person): one queued or running per key (a repeat gets the
    /// job in progress), at most `exports.per_day` started and `exports.bytes_per_day` written
    /// per key within 24 hours, and none when the disk would keep less than
    /// `exports.min_free_mb` free after about `estimate` bytes more. Refusals say why.
    pub async fn start_bounded(
        &self,
        job: silo_jobs::NewJob,
        key_path: &str,
        key: &str,
        estimate: u64,
        actor: &str,
    ) -> Result<Enqueued> {
        let limits = &self.0.settings().exports;
        let dir = self.dir();
        std::fs::create_dir_all(&dir).map_err(|e| io_error("create", &dir, e))?;
        let free = sqlite::disk_space(&dir)?.available;
        let needed = estimate.saturating_add(limits.min_free_mb.saturating_mul(1_000_000));
        if free < needed {
            tracing::warn!(free, needed, "export refused: the disk is nearly full");
            return Err(Error::DiskLow(format!(
                "There is not enough free disk space for an export right now ({} MB free, about {} MB needed); \
                 operators have been told. Try again later.",
                free / 1_000_000,
                needed / 1_000_000
            )));
        }
        let bound =
            silo_jobs::Bound { key_path, key, per_day: limits.per_day, bytes_per_day: limits.bytes_per_day };
        match self.0.jobs().enqueue_bounded(job, actor, &bound).await {
            Err(silo_jobs::Error::AllowanceUsed { message, next }) => {
                let wait = next.unix_ms().saturating_sub(self.0.control().now().unix_ms()).max(0);
                let wait = std::time::Duration::from_millis(wait as u64);
                Err(Error::AllowanceUsed { message: format!("No more exports today: {message}."), wait })
            }
            other => Ok(other?),
        }
    }

    /// Where exports are written (`<data_dir>/exports`).
    pub fn dir(&self) -> PathBuf {
        self.0.settings().data_dir.join("exports")
    }

    /// The zip of export job `job` (`<data_dir>/exports/<job id>.zip`).
    pub fn path(&self, job: &str) -> PathBuf {
        self.dir().join(format!("{job}.zip"))
    }

    /// Where export job `job` writes before its zip is complete (renamed over [`Exports::path`]).
    pub fn partial_path(&self, job: &str) -> PathBuf {
        self.dir().join(format!("{job}.zip.partial"))
    }

    /// Deletes export job `job`'s zip and any partial file; returns whether something was there.
    pub fn remove(&self, job: &str) -> std::io::Result<bool> {
        let mut removed = false;
        for path in [self.partial_path(job), self.path(job)] {
            match std::fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Deletes every export of `tenant` (zips and partial files); returns the export jobs
    /// whose files were deleted (a purge lists them in its certificate).
    pub async fn remove_of_tenant(&self, tenant: silo_core::TenantId) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for job in self.0.jobs().of_tenant(crate::jobs::TENANT_EXPORT, tenant, i64::MAX).await? {
            let path = self.path(&job.id);
            if self.remove(&job.id).map_err(|e| io_error("delete", &path, e))? {
                removed.push(job.id);
            }
        }
        Ok(removed)
    }

    /// Whether a tenant export whose snapshot was taken at `snapshot_at` may be kept: the
    /// tenant is not deleted, and no erasure that reaches it was still under way or finished
    /// after the snapshot (the zip could hold the erased person). Checked after the zip is in
    /// place, so an erasure that starts later finds the zip and deletes it.
    pub async fn may_keep(
        &self,
        tenant: silo_core::TenantId,
        snapshot_at: &silo_core::Timestamp,
    ) -> Result<Option<String>> {
        let row = self.0.tenant(&TenantRef::Id(tenant)).await?;
        if matches!(row.status, crate::TenantStatus::Deleting | crate::TenantStatus::Deleted) {
            return Ok(Some("the workspace was deleted while it was exported".into()));
        }
        let erasing: i64 = db::query_scalar(
            "SELECT count(*) FROM erasures WHERE json_type(tenants, '$.\"' || ?1 || '\"') IS NOT NULL
             AND (completed_at IS NULL OR completed_at >= ?2)",
        )
        .bind(tenant.to_string())
        .bind(snapshot_at.as_str())
        .fetch_one(self.0.control().writer())
        .await?;
        Ok((erasing > 0).then(|| "a person in this workspace was being erased while it was exported".into()))
    }

    /// A download link for the export made by job `job`: `/api/v1/exports/{job}?expires=…&signature=…`,
    /// valid until `expires`. The signature is an AES-GCM tag under a key derived from the
    /// master key, over the job id and the expiry: it cannot be forged or extended.
    pub async fn download_link(&self, job: &str, expires: std::time::SystemTime) -> Result<String> {
        let expires = expires.duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        let key = self.0.master_key().await?.derive(EXPORT_LINK_PURPOSE);
        let signature = hex(&key.seal(b"", &link_context(job, expires)));
        Ok(format!("/api/v1/exports/{job}?expires={expires}&signature={signature}"))
    }

    /// The zip a download link points at. A bad signature or an unknown job: not found. A
    /// link past its expiry, of a deleted workspace, or whose zip was deleted (erasure,
    /// purge): gone, with a message about the link.
    pub async fn open_link(&self, job: &str, expires: u64, signature: &str) -> Result<PathBuf> {
        let not_found = || Error::NotFound(format!("export {job}"));
        let sealed = silo_core::tokens::from_hex(signature).ok_or_else(not_found)?;
        let key = self.0.master_key().await?.derive(EXPORT_LINK_PURPOSE);
        key.open(&sealed, &link_context(job, expires)).map_err(|_| not_found())?;
        let path = self.path(job);
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs();
        if now > expires {
            let _ = self.remove(job);
            let when = silo_core::time::utc_timestamp(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(expires),
            );
            return Err(Error::LinkGone(format!(
                "This download link expired on {}; start a new export to get a fresh one.",
                when.as_str().get(..10).unwrap_or(when.as_str())
            )));
        }
        let made_by = match self.0.jobs().get(job).await {
            Ok(made_by) => made_by,
            Err(silo_jobs::Error::UnknownJob(_)) => {
                return Err(Error::LinkGone("This export is no longer kept; start a new one.".into()));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(tenant) = made_by.payload["tenant"].as_str().and_then(|t| t.parse().ok()) {
            let row = self.0.tenant(&TenantRef::Id(tenant)).await?;
            if matches!(row.status, crate::TenantStatus::Deleting | crate::TenantStatus::Deleted) {
                return Err(Error::LinkGone(
                    "This export's workspace has been deleted, so its download link no longer works.".into(),
                ));
            }
        }
        if !path.is_file() {
            return Err(Error::LinkGone(
                "This export has been deleted (a workspace purge or a person's erasure removes exports that hold \
                 their data); start a new export."
                    .into(),
            ));
        }
        Ok(path)
    }

    /// Deletes export zips older than `keep`; returns how many went.
    pub fn forget_expired(&self, keep: std::time::Duration) -> Result<usize> {
        let dir = self.0.settings().data_dir.join("exports");
        let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(0) };
        let mut removed = 0;
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|at| at.elapsed().is_ok_and(|age| age > keep));
            if old && std::fs::remove_file(entry.path()).is_ok() {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Writes the export of a tenant to `out`.
    #[tracing::instrument(name = "tenant_export", skip_all, fields(tenant = %tenant))]
    pub async fn export(&self, tenant: &TenantRef, out: &Path, actor: &str) -> Result<Manifest> {
        let tenant = self.0.tenant(tenant).await?;
        if matches!(tenant.status, crate::TenantStatus::Deleted) {
            return Err(Error::Gone(tenant.slug.to_string()));
        }
        let source = self.0.tenant_path(&tenant)?;
        let snapshot =
            self.0.temp_path(&crate::scratch::name("export", &uuid::Uuid::now_v7().to_string()))?;
        let exported_at = self.0.control().now();
        let staged = snapshot.clone();
        self.0.cache().with_file(tenant.id, source, move |conn| Ok(sqlite::snapshot(conn, &staged)?)).await?;
        let mut manifest = Manifest {
            format: "silo-export/1",
            tenant_id: tenant.id.to_string(),
            slug: tenant.slug.to_string(),
            schema_version: 0,
            exported_at,
            row_counts: BTreeMap::new(),
            sha256: BTreeMap::new(),
            notes: "tables/*.json: one array of objects per table; tables/*.csv: RFC 4180 with a header row, \
                    NULL as an empty field; BLOBs as lowercase hex in both",
            csv_formula_guard: CSV_FORMULA_GUARD,
        };
        let (from, to) = (snapshot.clone(), out.to_owned());
        let written = tokio::task::spawn_blocking(move || {
            manifest.schema_version = crate::schema::read_file_version(&from)?;
            write_zip(&from, &to, &mut manifest)?;
            Ok::<_, Error>(manifest)
        })
        .await
        .expect("an export task panicked");
        let _ = sqlite::remove_database_files(&snapshot).await;
        let manifest = written?;
        let detail = serde_json::json!({ "rows": manifest.row_counts.values().sum::<u64>() });
        self.0.control().record_audit(tenant.id, actor, "tenant.export", &detail).await?;
        Ok(manifest)
    }
}

/// Writes the zip to a temporary file beside `out`, then renames it into place.
fn write_zip(snapshot: &Path, out: &Path, manifest: &mut Manifest) -> Result<()> {
    let partial = PathBuf::from(format!("{}.partial", out.display()));
    let io = |action: &'static str, path: &Path| {
        let path = path.to_owned();
        move |e: std::io::Error| Error::Storage(silo_storage::Error::Io { action, path, source: e })
    };
    let result = (|| {
        let file = std::fs::File::create(&partial).map_err(io("create", &partial))?;
        let mut zip = zip::ZipWriter::new(file);
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .large_file(true);
        let zip_error = |e: zip::result::ZipError| {
            let source = match e {
                zip::result::ZipError::Io(io) => io,
                other => std::io::Error::other(other),
            };
            Error::Storage(silo_storage::Error::Io {
                action: "write the export zip",
                path: out.to_owned(),
                source,
            })
        };

        zip.start_file("database.sqlite", options).map_err(zip_error)?;
        let mut hashing = Hashing::new(&mut zip);
        let mut db = std::fs::File::open(snapshot).map_err(io("read", snapshot))?;
        std::io::copy(&mut db, &mut hashing).map_err(io("write", &partial))?;
        manifest.sha256.insert("database.sqlite".into(), hashing.finish());

        let conn =
            rusqlite::Connection::open_with_flags(snapshot, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        for (table, virtual_table) in tables(&conn)? {
            let select = if virtual_table {
                format!("SELECT rowid AS rowid, * FROM \"{}\"", table.replace('"', "\"\""))
            } else {
                format!("SELECT * FROM \"{}\"", table.replace('"', "\"\""))
            };
            let mut statement = conn.prepare(&select)?;
            let columns: Vec<String> = statement.column_names().iter().map(|c| c.to_string()).collect();
            let (json_name, csv_name) = (format!("tables/{table}.json"), format!("tables/{table}.csv"));

            zip.start_file(json_name.as_str(), options).map_err(zip_error)?;
            let mut json = Hashing::new(&mut zip);
            let mut rows = statement.query([])?;
            let mut count = 0u64;
            json.write_all(b"[").map_err(io("write", &partial))?;
            while let Some(row) = rows.next()? {
                let mut object = serde_json::Map::new();
                for (i, column) in columns.iter().enumerate() {
                    object.insert(column.clone(), json_value(row.get_ref(i)?));
                }
                json.write_all(if count == 0 { b"\n" } else { b",\n" }).map_err(io("write", &partial))?;
                serde_json::to_writer(&mut json, &object).map_err(|e| io("write", &partial)(e.into()))?;
                count += 1;
            }
            json.write_all(b"\n]\n").map_err(io("write", &partial))?;
            manifest.sha256.insert(json_name, json.finish());
            drop(rows);

            zip.start_file(csv_name.as_str(), options).map_err(zip_error)?;
            let mut csv = Hashing::new(&mut zip);
            let header: Vec<String> = columns.iter().map(|c| csv_field(c)).collect();
            writeln!(csv, "{}\r", header.join(",")).map_err(io("write", &partial))?;
            let mut rows = statement.query([])?;
            while let Some(row) = rows.next()? {
                let fields = (0..columns.len())
                    .map(|i| row.get_ref(i).map(csv_value))
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                writeln!(csv, "{}\r", fields.join(",")).map_err(io("write", &partial))?;
            }
            manifest.sha256.insert(csv_name, csv.finish());
            manifest.row_counts.insert(table, count);
        }
        drop(conn);

        zip.start_file("manifest.json", options).map_err(zip_error)?;
        serde_json::to_writer_pretty(&mut zip, manifest).map_err(|e| io("write", &partial)(e.into()))?;
        let file = zip.finish().map_err(zip_error)?;
        file.sync_all().map_err(io("fsync", &partial))?;
        std::fs::rename(&partial, out).map_err(io("rename into", out))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Ordinary and virtual tables (FTS5), without SQLite's own and the FTS shadow tables.
fn tables(conn: &rusqlite::Connection) -> Result<Vec<(String, bool)>> {
    let mut statement = conn.prepare(
        "SELECT name, type = 'virtual' FROM pragma_table_list
         WHERE schema = 'main' AND type IN ('table', 'virtual') AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
         ORDER BY name",
    )?;
    let tables = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?;
    Ok(tables)
}

fn io_error(action: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Storage(silo_storage::Error::Io { action, path: path.to_owned(), source })
}

/// A SQLite value as JSON (BLOBs as lowercase hex); also what `silo tenant sql` prints.
pub fn json_value(value: ValueRef<'_>) -> serde_json::Value {
    match value {
        ValueRef::Null => serde_json::Value::Null,
        ValueRef::Integer(i) => i.into(),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned().into(),
        ValueRef::Blob(b) => hex(b).into(),
    }
}

fn csv_value(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => String::new(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => csv_field(&defuse_formula(&String::from_utf8_lossy(t))),
        ValueRef::Blob(b) => hex(b),
    }
}

/// What the manifest says about [`defuse_formula`].
const CSV_FORMULA_GUARD: &str = "in tables/*.csv, a text cell that starts with =, +, -, @, a tab or a \
    carriage return is prefixed with ' so spreadsheets show it as text instead of running it as a \
    formula; numbers and the JSON files are unchanged";

/// A text cell a spreadsheet would run as a formula (`=HYPERLINK(…)`, `+cmd|…`, `@SUM(…)`),
/// prefixed with `'` (OWASP's CSV-injection advice). Only text cells: a negative number stays
/// a number.
fn defuse_formula(text: &str) -> std::borrow::Cow<'_, str> {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// RFC 4180: quote fields holding a comma, a quote or a line break; double inner quotes.
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// A writer that hashes what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Self { inner, hasher: Sha256::new() }
    }

    fn finish(self) -> String {
        hex(&self.hasher.finalize())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(
            csv_value(ValueRef::Text(b"=HYPERLINK(\"http://x\")")),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        for risky in ["+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"] {
            assert!(
                csv_value(ValueRef::Text(risky.as_bytes())).trim_start_matches('"').starts_with('\''),
                "{risky:?}"
            );
        }
        assert_eq!(csv_value(ValueRef::Integer(-5)), "-5", "numbers stay numbers");
        assert_eq!(csv_value(ValueRef::Text(b"a = b")), "a = b");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
