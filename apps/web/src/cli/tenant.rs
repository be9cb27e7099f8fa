//! `silo tenant …`: create, list, show, suspend, resume, delete, move, sql.

use clap::{Args, Subcommand};
use serde::Serialize;
use silo_backups::BackupsExt;
use silo_core::TenantRef;
use silo_tenancy::{CreateTenant, Tenant, TenantFilter, TenantStatus};

use super::actor;
use crate::output::{self, print_json, table};

/// Tenant commands.
#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Provision a tenant: its control-plane row and its migrated SQLite file.
    Create {
        /// URL name: 3-63 of a-z, 0-9 and `-`.
        slug: String,
        /// Display name (default: the slug).
        #[arg(long)]
        name: Option<String>,
        /// Region (default: the configured default region).
        #[arg(long)]
        region: Option<String>,
        /// Plan (default: free).
        #[arg(long)]
        plan: Option<String>,
        #[command(flatten)]
        format: Format,
    },
    /// List tenants.
    List {
        /// Only tenants with this status (active, suspended, deleting, deleted).
        #[arg(long)]
        status: Option<String>,
        /// Only tenants in this region.
        #[arg(long)]
        region: Option<String>,
        #[command(flatten)]
        format: Format,
    },
    /// Show one tenant (by slug or id).
    Show {
        /// Slug or UUID.
        tenant: String,
        #[command(flatten)]
        format: Format,
    },
    /// Close a tenant to its users (its file is kept).
    Suspend {
        /// Slug or UUID.
        tenant: String,
    },
    /// Reopen a suspended tenant.
    Resume {
        /// Slug or UUID.
        tenant: String,
    },
    /// Move a tenant to another plan (its storage limit applies at once).
    SetPlan {
        /// Slug or UUID.
        tenant: String,
        /// A plan from the settings (`free`, `team`, `business` by default).
        plan: String,
    },
    /// Delete a tenant: soft by default (file kept), for good with --purge.
    Delete {
        /// Slug or UUID.
        tenant: String,
        /// Also remove its files now.
        #[arg(long)]
        purge: bool,
    },
    /// Move a tenant's file to another region (a pre-move backup first; unavailable only
    /// while the file is copied), or to another server of the cluster (through the backup
    /// store; run on the server that has the tenant). Run by the server when one runs.
    Move {
        /// Slug or UUID.
        tenant: String,
        /// The region to move to.
        #[arg(long, required_unless_present = "node", conflicts_with = "node")]
        region: Option<String>,
        /// The server of the cluster to move to (`[cluster] node`).
        #[arg(long)]
        node: Option<String>,
        #[command(flatten)]
        format: Format,
    },
    /// Run a read-only SQL query on a tenant's file.
    Sql {
        /// Slug or UUID.
        tenant: String,
        /// The query (writes are refused).
        query: String,
        #[command(flatten)]
        format: Format,
    },
}

/// `--json`.
#[derive(Debug, Args)]
pub struct Format {
    /// Print one JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

/// `tenant show` output: the control-plane row plus facts about the file.
#[derive(Serialize)]
struct TenantDetail {
    #[serde(flatten)]
    tenant: Tenant,
    path: String,
    file_size: u64,
}

impl TenantCommand {
    /// Runs the command.
    pub async fn run(self, billing: &silo_billing::Billing) -> anyhow::Result<()> {
        let tenancy = billing.tenancy();
        match self {
            Self::Create { slug, name, region, plan, format } => {
                let tenant = billing
                    .subscriptions()
                    .create_tenant(CreateTenant { slug, name, region, plan }, None, &actor())
                    .await?;
                if format.json {
                    print_json(&tenant)?;
                } else {
                    crate::say!("created tenant {} ({}) in region {}", tenant.slug, tenant.id, tenant.region);
                }
            }
            Self::List { status, region, format } => {
                let status = status.map(|s| s.parse::<TenantStatus>()).transpose()?;
                let tenants = tenancy.tenants().list(&TenantFilter { status, region }).await?;
                if format.json {
                    print_json(&tenants)?;
                } else {
                    print_list(&tenants);
                }
            }
            Self::Show { tenant, format } => {
                let tenant = tenancy.tenant(&parse_ref(&tenant)?).await?;
                let path = tenancy.tenant_path(&tenant)?;
                let file_size = silo_storage::sqlite::database_size(&path);
                let detail = TenantDetail { path: path.display().to_string(), file_size, tenant };
                if format.json {
                    print_json(&detail)?;
                } else {
                    print_detail(&detail);
                }
            }
            Self::Suspend { tenant } => {
                let tenant = tenancy.tenants().suspend(&parse_ref(&tenant)?, &actor()).await?;
                crate::say!("suspended tenant {}", tenant.slug);
            }
            Self::Resume { tenant } => {
                let tenant = tenancy.tenants().resume(&parse_ref(&tenant)?, &actor()).await?;
                crate::say!("resumed tenant {}", tenant.slug);
            }
            Self::SetPlan { tenant, plan } => {
                let tenant = billing.subscriptions().change(&parse_ref(&tenant)?, &plan, &actor()).await?;
                crate::say!("tenant {} is on plan {}", tenant.slug, tenant.plan);
            }
            Self::Delete { tenant, purge } => {
                let reference = parse_ref(&tenant)?;
                let current = tenancy.tenant(&reference).await?;
                if current.status != TenantStatus::Deleting {
                    tenancy.tenants().delete(&reference, &actor()).await?;
                }
                if purge {
                    // By id: the slug may be taken again once purged.
                    tenancy.tenants().purge(&TenantRef::Id(current.id), &actor()).await?;
                    crate::say!(
                        "purged tenant {} ({}): its files and backups are removed, its data key destroyed",
                        current.slug,
                        current.id
                    );
                } else {
                    crate::say!("deleted tenant {} (file kept; purge with --purge)", current.slug);
                }
            }
            Self::Move { tenant, region: None, node: Some(node), format } => {
                let moved =
                    tenancy.backups().relocations().to_node(&parse_ref(&tenant)?, &node, &actor()).await?;
                if format.json {
                    print_json(&moved)?;
                } else {
                    crate::say!(
                        "moved {} from node {} to node {}; unavailable here {:.1} ms ({} commits shipped after the pre-move backup {}); {} {}",
                        moved.tenant.slug,
                        moved.from,
                        moved.to,
                        moved.unavailable_ms,
                        moved.commits_shipped,
                        moved.backup.id,
                        moved.to,
                        if moved.prepared {
                            "had prepared it: it serves it once it replays those commits"
                        } else {
                            "did not prepare it: it restores it from the store on its first request"
                        }
                    );
                }
            }
            Self::Move { tenant, region, format, .. } => {
                let region = region.unwrap_or_default();
                let moved =
                    tenancy.backups().relocations().relocate(&parse_ref(&tenant)?, &region, &actor()).await?;
                if format.json {
                    print_json(&moved)?;
                } else {
                    crate::say!(
                        "moved {} from {} to {} ({}); unavailable {:.1} ms; pre-move backup {}",
                        moved.tenant.slug,
                        moved.from,
                        moved.tenant.region,
                        output::bytes(moved.bytes),
                        moved.unavailable_ms,
                        moved.backup.id
                    );
                }
            }
            Self::Sql { tenant, query, format } => {
                let result = tenancy.queries().read_only(&parse_ref(&tenant)?, &query).await?;
                if format.json {
                    let rows: Vec<serde_json::Map<String, serde_json::Value>> = result
                        .rows
                        .iter()
                        .map(|row| result.columns.iter().cloned().zip(row.iter().cloned()).collect())
                        .collect();
                    print_json(&serde_json::json!({ "columns": result.columns, "rows": rows }))?;
                } else {
                    let header: Vec<&str> = result.columns.iter().map(String::as_str).collect();
                    let rows: Vec<Vec<String>> =
                        result.rows.iter().map(|row| row.iter().map(cell).collect()).collect();
                    crate::say!("{}", table(&header, &rows));
                    crate::say!("({} row{})", rows.len(), if rows.len() == 1 { "" } else { "s" });
                }
            }
        }
        Ok(())
    }
}

fn parse_ref(s: &str) -> anyhow::Result<TenantRef> {
    Ok(s.parse::<TenantRef>()?)
}

fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "NULL".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_list(tenants: &[Tenant]) {
    let rows: Vec<Vec<String>> = tenants
        .iter()
        .map(|t| {
            vec![
                t.slug.to_string(),
                t.status.to_string(),
                t.region.to_string(),
                t.plan.clone(),
                t.schema_version.to_string(),
                t.id.to_string(),
                t.created_at.to_string(),
            ]
        })
        .collect();
    crate::say!("{}", table(&["SLUG", "STATUS", "REGION", "PLAN", "SCHEMA", "ID", "CREATED"], &rows));
}

fn print_detail(detail: &TenantDetail) {
    let t = &detail.tenant;
    let rows = [
        ("slug", t.slug.to_string()),
        ("id", t.id.to_string()),
        ("name", t.name.clone()),
        ("status", t.status.to_string()),
        ("region", t.region.to_string()),
        ("plan", t.plan.clone()),
        ("schema_version", t.schema_version.to_string()),
        ("migration_error", t.migration_error.clone().unwrap_or_else(|| "-".to_owned())),
        ("path", detail.path.clone()),
        ("file_size", output::bytes(detail.file_size)),
        ("created_at", t.created_at.to_string()),
        ("updated_at", t.updated_at.to_string()),
        ("deleted_at", t.deleted_at.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string)),
    ];
    for (key, value) in rows {
        crate::say!("{key:<16} {value}");
    }
}
