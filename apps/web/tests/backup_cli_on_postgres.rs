//! `backup_cli.rs` again with the control plane on PostgreSQL: a test binary whose name holds
//! `_on_postgres` puts it there (`silo_core::db::testing::engine`).

#[path = "backup_cli.rs"]
mod backup_cli;
