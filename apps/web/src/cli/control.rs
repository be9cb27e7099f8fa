//! `silo control`: the control plane itself — copy an installation's `control.db` into
//! PostgreSQL, the step from one server to a cluster (see `silo_tenancy::control_copy`).

use std::process::ExitCode;

use clap::Subcommand;
use silo_core::Secret;

use crate::output::{print_json, table};

/// Control-plane commands.
#[derive(Debug, Subcommand)]
pub enum ControlCommand {
    /// Copy this data directory's control plane (`control.db`) into an empty PostgreSQL
    /// database, with the server stopped; afterwards `silo serve` runs with `[control] url`.
    CopyToPostgres {
        /// The database, `postgres://user:password@host:5432/db` (default: `[control] url`
        /// or SILO_CONTROL__URL, which keep the password off the command line).
        #[arg(long)]
        url: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl ControlCommand {
    /// Runs the command (never through a server: the caller holds the data directory).
    pub async fn run(self, settings: crate::settings::Settings) -> anyhow::Result<ExitCode> {
        match self {
            Self::CopyToPostgres { url, json } => {
                let url = match url.map(Secret::new).or(settings.fleet.control.url.clone()) {
                    Some(url) if !url.expose().trim().is_empty() => url,
                    _ => anyhow::bail!(
                        "say which PostgreSQL database to copy into: --url postgres://… or SILO_CONTROL__URL"
                    ),
                };
                let data_dir = &settings.fleet.data_dir;
                let schema = crate::schema::schema();
                let copied = silo_tenancy::control_copy::copy_to_postgres(data_dir, &url, &schema).await?;
                let store_copies = remove_store_copies(&settings, url.clone()).await;
                if json {
                    print_json(&serde_json::json!({
                        "database": database_of(url.expose()),
                        "tables": copied.tables,
                        "old_control_db": copied.old_control_db,
                        "store_copies_removed": store_copies.as_ref().ok(),
                    }))?;
                } else {
                    let rows: Vec<Vec<String>> = copied
                        .tables
                        .iter()
                        .map(|(name, rows)| vec![name.clone(), rows.to_string()])
                        .collect();
                    crate::say!("{}", table(&["TABLE", "ROWS"], &rows));
                    crate::say!(
                        "copied the control plane of {} into PostgreSQL at {}.\n\
                         Next: start `silo serve` with [control] url (or SILO_CONTROL__URL) set to that database; \
                         it owns every tenant whose file is in this data directory.\n\
                         The old control.db is {}: keep it until the new control plane has served, then delete it \
                         (it holds the tenants' wrapped data keys and the accounts).",
                        data_dir.display(),
                        database_of(url.expose()),
                        copied.old_control_db.display()
                    );
                }
                match store_copies {
                    Ok(0) => {}
                    Ok(_) if json => {}
                    Ok(removed) => crate::say!(
                        "removed the {removed} copies of control.db from the backup store (they would keep what later erasures remove)"
                    ),
                    Err(e) => crate::say_err!(
                        "warning: the copies of control.db in the backup store could not be removed yet ({}); \
                         the first server on PostgreSQL removes them at its first prune",
                        super::describe(&e)
                    ),
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}

/// Removes the copies of the old `control.db` from the backup store, through the fleet as it
/// runs now (on PostgreSQL at `url`): see `Backups::remove_control_copies`.
async fn remove_store_copies(settings: &crate::settings::Settings, url: Secret) -> anyhow::Result<usize> {
    let mut fleet = settings.fleet.clone();
    fleet.control.url = Some(url);
    let tenancy = crate::schema::open(fleet).await?;
    let removed = silo_backups::Backups::of(&tenancy).remove_control_copies().await;
    tenancy.shutdown().await;
    Ok(removed?)
}

/// The database a URL names, for people: host, port and name, never the password.
fn database_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    rest.split('?').next().unwrap_or_default().to_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_database_is_named_without_its_password() {
        assert_eq!(
            super::database_of("postgres://silo:s3cr@t@db.internal:5432/silo?sslmode=verify-full"),
            "db.internal:5432/silo"
        );
        assert_eq!(super::database_of("postgresql://db/silo"), "db/silo");
    }
}
