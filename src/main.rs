//! `prime-server`: parse flags, then [`prime_server::ops::run_server`]
//! builds the logger, binds, opens the audit log and serves.
//! Exit status: 0 after a graceful stop, 1 when the server cannot start,
//! 2 for bad flags, 130 after a second signal.

use clap::Parser;
use prime_server::ops::flags::ServerArgs;
use prime_server::ops::{run_server, Server};
use prime_server::prime::PrimeService;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = ServerArgs::parse();
    let config = args.config();
    run_server(args.listen, &args.common, |log| {
        let service = PrimeService::open(&config, log)?;
        Ok(Server::open(service, &config.server, log))
    })
}
