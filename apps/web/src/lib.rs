//! `silo-web`: the `silo` binary — the operator CLI (clap) and the HTTP server (actix-web).
//!
//! [`cli`] parses and runs commands; [`startup`] builds and stops the [`startup::Application`]
//! (server and background loops); [`server`] serves HTTP; [`logging`] sets up tracing;
//! [`output`] prints tables and JSON. Domain logic lives in `silo-accounts`, `silo-workspace`, `silo-tenancy` and below: this
//! crate only translates between people (or HTTP clients) and it.

pub mod cli;
pub mod logging;
pub mod output;
pub mod server;
pub mod settings;
pub mod startup;
