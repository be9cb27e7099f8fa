//! The `silo` binary: see `silo --help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = silo_web::cli::Cli::parse();
    silo_server::logging::init(cli.command.is_server());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(silo_tenancy::limits::MAX_BLOCKING_THREADS)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli.run()) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {}", silo_web::cli::describe(&error));
            ExitCode::FAILURE
        }
    }
}
