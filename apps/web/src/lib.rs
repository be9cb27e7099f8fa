//! `silo-web`: the `silo` binary — the operator CLI (clap), the settings, and the
//! [`startup::Application`] that runs the HTTP server (`silo-server`) and the background loops.
//!
//! Domain logic lives in `silo-accounts`, `silo-workspace`, `silo-tenancy` and below: this
//! crate only translates between people (or HTTP clients) and them.
//!
//! # Layout
//! - [`settings`]: the process's [`settings::Settings`] (one file, one environment).
//! - [`startup`]: the [`startup::Application`] — HTTP server and background loops under one
//!   shutdown signal; `silo serve` and the end-to-end tests both run it.
//! - [`cli`]: the commands; [`output`]: tables and JSON for the CLI. HTTP (pages, API,
//!   probes) and the log output are `silo-server`'s.
//! - [`schema`]: the control plane's migrations and the tenant schema, assembled for the fleet.

pub mod cli;
pub mod output;
pub mod schema;
pub mod settings;
pub mod startup;
