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
                let copied =
                    silo_tenancy::control_copy::copy_to_postgres(data_dir, &url, &crate::schema::schema())
                        .await?;
                if json {
                    print_json(&copied)?;
                } else {
                    let rows: Vec<Vec<String>> = copied
                        .tables
                        .iter()
                        .map(|(name, rows)| vec![name.clone(), rows.to_string()])
                        .collect();
                    crate::say!("{}", table(&["TABLE", "ROWS"], &rows));
                    crate::say!(
                        "copied the control plane of {} into PostgreSQL.\n\
                         Next: start `silo serve` with [control] url (or SILO_CONTROL__URL) set to that database; \
                         it owns every tenant whose file is in this data directory.\n\
                         The old control.db is {}: keep it until the new control plane has served, then delete it \
                         (it holds the tenants' wrapped data keys and the accounts).",
                        data_dir.display(),
                        copied.old_control_db.display()
                    );
                }
                Ok(ExitCode::SUCCESS)
            }
        }
    }
}
