//! `silo cluster`: the servers sharing this control plane — list them, and rebalance this
//! server's tenants over them.

use clap::Subcommand;
use silo_backups::BackupsExt;
use silo_tenancy::Tenancy;

use super::actor;
use crate::output::{print_json, table};

/// Cluster commands.
#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The servers of this control plane: tenants, their files' size, open files, free disk,
    /// last heartbeat.
    Nodes {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Which server has each tenant, for a load balancer that routes by tenant: an nginx
    /// `map` body (`slug host:port;`), an HAProxy map file (`slug node`), or JSON.
    Routes {
        /// `nginx`, `haproxy` or `json`.
        #[arg(long, default_value = "nginx", value_parser = ["nginx", "haproxy", "json"])]
        format: String,
    },
    /// Move this server's tenants beyond its fair share to the servers with the fewest
    /// (smallest files first; each through the backup store, like `tenant move --node`).
    Rebalance {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

impl ClusterCommand {
    /// Runs the command.
    pub async fn run(self, tenancy: &Tenancy) -> anyhow::Result<std::process::ExitCode> {
        match self {
            Self::Nodes { json } => {
                let nodes = tenancy.nodes().list().await?;
                if json {
                    print_json(&nodes)?;
                } else {
                    let rows: Vec<Vec<String>> = nodes
                        .iter()
                        .map(|(n, live)| {
                            vec![
                                n.name.clone(),
                                if *live { "live".to_owned() } else { "silent".to_owned() },
                                n.advertise.clone(),
                                n.tenants.to_string(),
                                crate::output::bytes(n.tenant_bytes.max(0) as u64),
                                n.open_tenants.to_string(),
                                crate::output::bytes(n.free_bytes.max(0) as u64),
                                n.heartbeat_at.to_string(),
                            ]
                        })
                        .collect();
                    let header = [
                        "NODE",
                        "STATE",
                        "ADDRESS",
                        "TENANTS",
                        "THEIR FILES",
                        "OPEN",
                        "FREE DISK",
                        "HEARTBEAT",
                    ];
                    crate::say!("{}", table(&header, &rows));
                }
                Ok(std::process::ExitCode::SUCCESS)
            }
            Self::Routes { format } => {
                let routes = tenancy.routes().await?;
                match format.as_str() {
                    "json" => {
                        let routes: Vec<serde_json::Value> = routes
                            .iter()
                            .map(|(slug, node, advertise)| serde_json::json!({ "slug": slug, "node": node, "advertise": advertise }))
                            .collect();
                        print_json(&routes)?;
                    }
                    "haproxy" => {
                        for (slug, node, _) in &routes {
                            crate::say!("{slug} {node}");
                        }
                    }
                    _ => {
                        for (slug, _, advertise) in &routes {
                            let host =
                                advertise.split("://").last().unwrap_or(advertise).trim_end_matches('/');
                            crate::say!("{slug} {host};");
                        }
                    }
                }
                Ok(std::process::ExitCode::SUCCESS)
            }
            Self::Rebalance { json } => {
                let run = tenancy.backups().relocations().rebalance(&actor()).await?;
                if json {
                    print_json(&run)?;
                } else {
                    let before: Vec<String> = run.before.iter().map(|(n, c)| format!("{n}: {c}")).collect();
                    crate::say!(
                        "tenants per live server: {} (fair share {})",
                        before.join(", "),
                        run.fair_share
                    );
                    for (slug, to, ms) in &run.moved {
                        crate::say!("moved {slug} to {to} (unavailable {ms:.1} ms)");
                    }
                    for (slug, why) in &run.failed {
                        crate::say!("could not move {slug}: {why}");
                    }
                    if run.moved.is_empty() && run.failed.is_empty() {
                        crate::say!("nothing to move: this server owns no more than its share");
                    }
                }
                Ok(if run.failed.is_empty() {
                    std::process::ExitCode::SUCCESS
                } else {
                    std::process::ExitCode::FAILURE
                })
            }
        }
    }
}
