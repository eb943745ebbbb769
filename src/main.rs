//! `prime-server`: parse flags, then [`prime_server::cli::run_server`]
//! builds the logger, binds and hands over to [`prime_server::run`].
//! Exit status: 0 after a graceful stop, 1 when the server cannot start,
//! 2 for bad flags, 130 after a second signal.

use clap::Parser;
use prime_server::cli::run_server;
use prime_server::config::ServerArgs;
use prime_server::PrimeServer;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = ServerArgs::parse();
    run_server("prime-server", args.listen, &args.common, |log| {
        Ok(PrimeServer::open(&args.config(), log)?)
    })
}
