//! `echo-server`: replies `GOT:` plus each line, on the same core as
//! prime-server (see [`prime_server::echo`]). Exit status as prime-server's:
//! 0 after a graceful stop, 1 when it cannot start, 2 for bad flags, 130
//! after a second signal.

use clap::Parser;
use prime_server::cli::run_server;
use prime_server::config::EchoArgs;
use prime_server::echo::EchoServer;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = EchoArgs::parse();
    run_server("echo-server", args.listen, &args.common, |log| {
        Ok(EchoServer::open(&args.common.server_options(), log))
    })
}
