//! `jobs_cli.rs` again with the control plane on PostgreSQL: a test binary whose name holds
//! `_on_postgres` puts it there (`silo_core::db::testing::engine`).

#[path = "jobs_cli.rs"]
mod jobs_cli;
