//! `silo-web`: the `silo` binary — the operator CLI (clap) and the HTTP server (actix-web).
//!
//! Domain logic lives in `silo-accounts`, `silo-workspace`, `silo-tenancy` and below: this
//! crate only translates between people (or HTTP clients) and them.
//!
//! # Layout
//! - [`settings`]: the process's [`settings::Settings`] (one file, one environment).
//! - [`startup`]: the [`startup::Application`] — HTTP server and background loops under one
//!   shutdown signal; `silo serve` and the end-to-end tests both run it.
//! - [`server`]: HTTP (pages, API, probes); [`cli`]: the commands; [`logging`]: tracing;
//!   [`output`]: tables and JSON for the CLI.
//! - [`schema`]: the control plane's migrations and the tenant schema, assembled for the fleet.

pub mod cli;
pub mod logging;
pub mod output;
pub mod schema;
pub mod server;
pub mod settings;
pub mod startup;
