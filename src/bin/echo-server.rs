//! `echo-server`: replies `GOT:` plus each line, on the same core as
//! prime-server (see [`prime_server::echo`]). Exit status as prime-server's:
//! 0 after a graceful stop, 1 when it cannot start, 2 for bad flags, 130
//! after a second signal.

use clap::Parser;
use prime_server::echo::EchoService;
use prime_server::ops::flags::EchoArgs;
use prime_server::ops::{run_server, Server};
use std::process::ExitCode;

fn main() -> ExitCode {
    let args = EchoArgs::parse();
    run_server(args.listen, &args.common, |log| {
        Ok(Server::open(
            EchoService::default(),
            &args.server_options(),
            log,
        ))
    })
}
