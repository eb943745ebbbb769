//! `prime-audit`: make the sealing key for `prime-server --audit-seal`, and
//! verify sealed audit logs (see [`prime_server::audit::seal`]).
//!
//! - `prime-audit keygen --state PATH` writes the initial sealing state
//!   (mode 0600, never overwriting) and prints the verification key.
//! - `prime-audit verify --key HEX LOG...` checks the logs, oldest first,
//!   each with its `LOG.seal` beside it, and prints one line: `ok: ...`
//!   (exit 0) or `FAILED: FILE:LINE: reason` (exit 1).
//!
//! Exit status: 0 verified (or key made), 1 a problem found (or keygen
//! failed), 2 bad usage.

use anyhow::Context;
use clap::{Parser, Subcommand};
use prime_server::audit::seal::{self, Key};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use zeroize::Zeroizing;

/// Forward-secure seals for the prime-server audit log.
#[derive(Debug, Parser)]
#[command(
    name = "prime-audit",
    version,
    about = "Makes the sealing key for prime-server --audit-seal, and verifies sealed audit logs against their seals"
)]
struct Cli {
    /// What to do.
    #[command(subcommand)]
    command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new sealing state to PATH (mode 0600; refuses to overwrite)
    /// and print the verification key on stdout. Keep that key off this
    /// machine: whoever holds it can forge any seal.
    Keygen {
        /// The state file for `prime-server --audit-seal PATH`.
        #[arg(long, value_name = "PATH")]
        state: PathBuf,
    },
    /// Check audit logs against their seals: exit 0 and a one-line summary
    /// when every sealed byte is intact (any unsealed lines are reported),
    /// exit 1 naming the file, line and reason of the first problem.
    Verify {
        /// The verification key printed by keygen (64 hex digits), or `-` to
        /// read it from stdin and keep it out of the process list.
        #[arg(long, value_name = "HEX")]
        key: String,
        /// The log files, oldest first (rotated files, then the current
        /// one), each with its `LOG.seal` beside it.
        #[arg(value_name = "LOG", required = true)]
        logs: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen { state } => match keygen(&state) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("prime-audit: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Verify { key, logs } => {
            let key = match read_key(&key) {
                Ok(key) => key,
                Err(e) => {
                    eprintln!("prime-audit: --key: {e:#}");
                    return ExitCode::from(2);
                }
            };
            match seal::verify(&key, &logs) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(failure) => {
                    println!("FAILED: {failure}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

/// `keygen`: writes the state and prints the key.
fn keygen(state: &std::path::Path) -> anyhow::Result<()> {
    let key = seal::keygen(state).context("keygen")?;
    println!("{}", key.to_hex().as_str());
    eprintln!(
        "prime-audit: wrote the sealing state {} (mode 0600); the line above is the \
         verification key: store it off this machine, it can forge any seal",
        state.display()
    );
    Ok(())
}

/// The key from the argument, or from stdin's first line for `-`.
fn read_key(arg: &str) -> anyhow::Result<Key> {
    if arg == "-" {
        // Room for the key, so the buffer holding it never reallocates.
        let mut line = Zeroizing::new(String::with_capacity(256));
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the key from stdin")?;
        return Ok(Key::from_hex(&line)?);
    }
    Ok(Key::from_hex(arg)?)
}
