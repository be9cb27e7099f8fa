//! The `silo` command line: global options, the command tree, and dispatch.

mod accounts;
mod backup;
mod billing;
mod cluster;
mod control;
mod gdpr;
mod jobs;
mod migrate;
pub mod remote;
mod tenant;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use silo_accounts::Accounts;
use silo_tenancy::{DataDirLock, Tenancy};

use crate::settings::Settings;
use crate::startup::Application;

/// Silo: a multi-tenant platform where every tenant lives in its own SQLite file.
#[derive(Debug, Parser)]
#[command(name = "silo", version, about)]
pub struct Cli {
    /// Data directory (control.db, regions, objects).
    #[arg(long, global = true, env = "SILO_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Configuration file (default: ./silo.toml when present).
    #[arg(long, global = true, env = "SILO_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve {
        /// Address to listen on (default 127.0.0.1:8080, or `server.bind`).
        #[arg(long, value_name = "ADDR")]
        bind: Option<String>,
    },
    /// Provision and operate tenants.
    #[command(subcommand)]
    Tenant(tenant::TenantCommand),
    /// Migrate tenant files to the latest schema.
    Migrate(migrate::MigrateArgs),
    /// Operator accounts and tokens.
    #[command(subcommand)]
    Admin(accounts::AdminCommand),
    /// User accounts and personal tokens.
    #[command(subcommand)]
    User(accounts::UserCommand),
    /// Tenant memberships.
    #[command(subcommand)]
    Member(accounts::MemberCommand),
    /// Data-subject requests (GDPR): export-subject.
    #[command(subcommand)]
    Gdpr(gdpr::GdprCommand),
    /// Durable jobs (run by `silo serve`): list, show, retry, cancel.
    #[command(subcommand)]
    Jobs(jobs::JobsCommand),
    /// Invoices: the billing run, invoices, payments, dunning, billing contacts.
    #[command(subcommand)]
    Billing(billing::BillingCommand),
    /// Encrypted tenant backups: create, list, verify, prune.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Restore a tenant from a backup (in place, or as a new tenant with --as).
    Restore(backup::RestoreArgs),
    /// Export a tenant: a zip of its database, JSON and CSV per table, and a manifest.
    Export(backup::ExportArgs),
    /// The servers sharing this control plane: list them, rebalance tenants over them.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// The control plane itself: copy `control.db` into PostgreSQL (the step to a cluster).
    #[command(subcommand)]
    Control(control::ControlCommand),
    /// Rebuild an empty data directory from the backup store (disaster recovery): the control
    /// plane's newest copy, then every tenant to its last commit in the store.
    Recover(backup::RecoverArgs),
}

impl Command {
    /// Whether this command runs the server (which logs at `info`).
    pub fn is_server(&self) -> bool {
        matches!(self, Command::Serve { .. })
    }
}

/// How long a command waits for another command (or a starting server) to let go of the data
/// directory before giving up.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// What commands run on: the fleet, the people, billing. The CLI opens its own; a running
/// server lends its own to the commands it runs for the CLI ([`remote`]).
#[derive(Clone)]
pub struct Services {
    /// The fleet.
    pub tenancy: Tenancy,
    /// The people.
    pub accounts: Accounts,
    /// Plans, limits and invoices.
    pub billing: silo_billing::Billing,
}

impl Cli {
    /// Runs the command; the exit code says whether it fully succeeded. `silo serve` serves;
    /// any other command is run by the server when one runs on the data directory (see
    /// [`remote`]), else here, under the data-directory lock.
    pub async fn run(self) -> anyhow::Result<ExitCode> {
        let mut settings = Settings::load(self.config.as_deref())?;
        if let Some(dir) = self.data_dir {
            settings.fleet.data_dir = dir;
        }
        let data_dir = settings.fleet.data_dir.clone();
        if let Command::Serve { bind } = self.command {
            if let Some(bind) = bind {
                settings.server.bind = bind;
            }
            // Listening for SIGTERM/SIGINT from the start replaces their default action (exit at
            // once): one that arrives while the application is still starting stops it in
            // order too, instead of killing it before the server listens for signals itself.
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
            let application = Application::build(settings).await?;
            let handle = application.handle();
            tokio::spawn(async move {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt.recv() => {}
                }
                handle.stop().await;
            });
            application.run_until_stopped().await?;
            return Ok(ExitCode::SUCCESS);
        }
        if let Command::Control(command) = self.command {
            // Never through a server either: control.db must not change while it is copied.
            // Nor into a directory made for it (a mistyped --data-dir has nothing to copy).
            anyhow::ensure!(
                data_dir.join("control.db").exists(),
                "{} has no control.db to copy{}",
                data_dir.display(),
                if data_dir.join("control.db.copied-to-postgres").exists() {
                    ": it was copied to PostgreSQL already (control.db.copied-to-postgres)"
                } else {
                    ""
                }
            );
            let _lock = DataDirLock::acquire(&data_dir, "copy its control plane")?;
            return command.run(settings).await;
        }
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create data directory {}", data_dir.display()))?;
        if let Command::Recover(args) = self.command {
            // Never through a server (one serving this directory holds the lock: refused).
            let _lock = DataDirLock::acquire(&data_dir, "recover this data directory")?;
            return args.run(settings).await;
        }

        // A server runs the command; without one this process owns the data directory (and
        // every tenant file) while the command runs. Another CLI command holding the lock is
        // waited for (they take turns), as is a server still starting (its socket appears).
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let _lock = loop {
            if let Some(forwarded) = remote::forward(&data_dir, std::env::args().skip(1).collect()).await {
                return forwarded;
            }
            match DataDirLock::acquire(&data_dir, "run this command") {
                Ok(lock) => break lock,
                Err(silo_tenancy::Error::Busy(_)) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        let tenancy = crate::schema::open(settings.fleet.clone()).await?;
        let accounts = Accounts::new(tenancy.clone(), settings.accounts());
        let billing = settings.billing(accounts.clone());
        let services = Services { tenancy: tenancy.clone(), accounts, billing };
        let result = self.command.execute(&services).await;
        tenancy.shutdown().await;
        result
    }
}

impl Command {
    /// Runs a command other than `serve` on `services`.
    pub async fn execute(self, services: &Services) -> anyhow::Result<ExitCode> {
        let Services { tenancy, accounts, billing } = services;
        match self {
            Command::Serve { .. } => anyhow::bail!("`serve` is not a command to run on a server"),
            Command::Tenant(command) => command.run(billing).await.map(|()| ExitCode::SUCCESS),
            Command::Migrate(args) => args.run(tenancy).await,
            Command::Admin(command) => command.run(accounts).await.map(|()| ExitCode::SUCCESS),
            Command::User(command) => command.run(accounts).await.map(|()| ExitCode::SUCCESS),
            Command::Member(command) => command.run(accounts).await.map(|()| ExitCode::SUCCESS),
            Command::Jobs(command) => command.run(tenancy).await.map(|()| ExitCode::SUCCESS),
            Command::Gdpr(command) => command.run(accounts).await.map(|()| ExitCode::SUCCESS),
            Command::Billing(command) => command.run(billing).await.map(|()| ExitCode::SUCCESS),
            Command::Backup(command) => command.run(tenancy).await,
            Command::Restore(args) => args.run(tenancy).await,
            Command::Export(args) => args.run(tenancy).await,
            Command::Cluster(command) => command.run(tenancy).await,
            Command::Recover(_) => {
                anyhow::bail!("`recover` rebuilds an empty data directory: it does not run on a server")
            }
            Command::Control(_) => {
                anyhow::bail!(
                    "`control copy-to-postgres` runs with the server stopped: stop `silo serve` first"
                )
            }
        }
    }
}

/// Who the audit log names for CLI actions: `cli:<login user>`.
fn actor() -> String {
    format!("cli:{}", crate::output::os_user())
}

/// An error and its causes on one line, without backtrace and without repeating a cause that
/// an outer message already quotes (sqlx errors embed their source in their own message).
pub fn describe(error: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}
