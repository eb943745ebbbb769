//! What the server binaries share from start to exit: build the logger,
//! bind, install the signal handler, serve, drain the logger, and turn an
//! error into one sentence on stderr with exit status 1.

use crate::config::CommonArgs;
use crate::shutdown::{self, Shutdown};
use crate::{logging, server};
use anyhow::Context;
use slog::Logger;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

/// Runs a server binary: `serve` gets the bound listener, the shutdown
/// handle wired to SIGINT/SIGTERM, and the logger.
///
/// Exit status: 0 after a graceful stop, 1 (with `program: reason` on
/// stderr) when it cannot start or serve.
pub fn run_server(
    program: &'static str,
    listen: SocketAddr,
    common: &CommonArgs,
    serve: impl FnOnce(TcpListener, Shutdown, &Logger) -> anyhow::Result<()>,
) -> ExitCode {
    let (log, guard) = logging::build(common.log_level, common.log_format);
    logging::route_panics(&log);
    let result = (|| {
        let listener = server::bind(listen)?;
        let stop = Shutdown::new();
        shutdown::install_signal_handler(stop.clone(), program, log.clone())
            .context("cannot install the SIGINT/SIGTERM handler")?;
        serve(listener, stop, &log)
    })();
    // Dropping the guard waits until every record has reached stderr.
    drop(log);
    drop(guard);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{program}: {e:#}");
            ExitCode::FAILURE
        }
    }
}
