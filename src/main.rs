//! `prime-server`: parse flags, build the logger, bind, hand over to
//! [`prime_server::run`]. Exit status: 0 after a graceful stop, 1 when the
//! server cannot start, 2 for bad flags, 130 after a second signal.

use anyhow::Context;
use clap::Parser;
use prime_server::config::ServerArgs;
use prime_server::{logging, server, shutdown};
use slog::Logger;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = ServerArgs::parse();
    let (log, guard) = logging::build(args.common.log_level, args.common.log_format);
    logging::route_panics(&log);
    let result = serve(&args, &log);
    // Dropping the guard waits until every record has reached stderr.
    drop(log);
    drop(guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("prime-server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Binds, installs the signal handler and runs until a graceful stop.
fn serve(args: &ServerArgs, log: &Logger) -> anyhow::Result<()> {
    let listener = server::bind(args.listen)?;
    let stop = shutdown::Shutdown::new();
    shutdown::install_signal_handler(stop.clone(), "prime-server", log.clone())
        .context("cannot install the SIGINT/SIGTERM handler")?;
    prime_server::run(listener, stop, &args.config(), log)?;
    Ok(())
}
