//! `prime-audit`: make the sealing key for `prime-server --audit-seal`, and
//! verify sealed audit logs (see [`prime_server::audit::seal`]).
//!
//! - `prime-audit keygen --state PATH [--seal-interval DUR]` writes the
//!   initial sealing state (mode 0600, never overwriting) and prints the
//!   verification key: one token, `<64 hex>-<start ms>-<epoch ms>`.
//! - `prime-audit verify --key TOKEN LOG...` checks the logs, oldest first,
//!   each with its `LOG.seal` beside it, and prints one line: `ok: ...`
//!   (exit 0) only when every line is vouched for, or `FAILED: FILE:LINE:
//!   reason` (exit 1).
//!
//! Exit status: 0 verified (or key made), 1 a problem found (or keygen
//! failed), 2 bad usage or a file that is not a regular file.

use anyhow::Context;
use clap::{Parser, Subcommand};
use prime_server::audit::seal::{self, VerifyKey, EPOCH_BOUNDS};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};
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
    /// and print the verification key on stdout, one token. Keep that key
    /// off this machine: whoever holds it can forge any seal.
    Keygen {
        /// The state file for `prime-server --audit-seal PATH`.
        #[arg(long, value_name = "PATH")]
        state: PathBuf,
        /// The key epoch: the key evolves this often, whether or not lines
        /// are written, and a seal must be made with its epoch's key (10ms
        /// to 1h; the server seals new lines this often by default).
        #[arg(long, value_name = "DUR", default_value = "1s", value_parser = parse_epoch)]
        seal_interval: Duration,
        /// When epoch 0 starts (RFC 3339) [default: now].
        #[arg(long, value_name = "TIME", value_parser = parse_time)]
        start: Option<SystemTime>,
    },
    /// Check audit logs against their seals: exit 0 and a one-line summary
    /// only when every line is vouched for (sealed in time, no gap, no
    /// missing file, the end vouched for), exit 1 naming the file, line and
    /// reason of the first problem, exit 2 for a file that is not a
    /// regular file.
    Verify {
        /// The verification key printed by keygen, or `-` to read it from
        /// stdin and keep it out of the process list.
        #[arg(long, value_name = "KEY")]
        key: String,
        /// Vouch for the chain up to this time (RFC 3339, or `now`): a
        /// chain not ended by a shutdown seal needs a seal within two
        /// heartbeats of it.
        #[arg(long, value_name = "TIME", default_value = "now", value_parser = parse_until)]
        until: Until,
        /// Accept lines after the chain's last seal and an end not vouched
        /// for (what `kill -9` leaves until the server restarts); reported.
        #[arg(long)]
        allow_unsealed_tail: bool,
        /// Accept restarts after a crash (a start seal after a seal that is
        /// not a shutdown seal) and the lines they sealed late; reported.
        #[arg(long)]
        allow_crash: bool,
        /// Accept lines found on disk rather than seen written (before
        /// sealing began, or added while the server was stopped) and bytes
        /// a file held before the server opened it; reported.
        #[arg(long)]
        allow_preexisting: bool,
        /// The collector's copy of the shipped seals (a file of syslog
        /// messages, as rsyslog writes it): fail when the local chain is
        /// shorter than it, or differs from it.
        #[arg(long, value_name = "FILE")]
        seals_from: Option<PathBuf>,
        /// The log files, oldest first (rotated files, then the current
        /// one), each with its `LOG.seal` beside it.
        #[arg(value_name = "LOG", required = true)]
        logs: Vec<PathBuf>,
    },
}

/// `--until`: a time, or the moment of the check.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// `now`.
    Now,
    /// A fixed time.
    At(SystemTime),
}

fn parse_epoch(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    let (low, high) = EPOCH_BOUNDS;
    if d < low || d > high {
        return Err("must be between 10ms and 1h".into());
    }
    Ok(d)
}

fn parse_time(text: &str) -> Result<SystemTime, String> {
    humantime::parse_rfc3339_weak(text).map_err(|e| e.to_string())
}

fn parse_until(text: &str) -> Result<Until, String> {
    if text == "now" {
        return Ok(Until::Now);
    }
    parse_time(text).map(Until::At)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Keygen {
            state,
            seal_interval,
            start,
        } => match keygen(&state, seal_interval, start.unwrap_or_else(SystemTime::now)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("prime-audit: {e:#}");
                ExitCode::from(1)
            }
        },
        Command::Verify {
            key,
            until,
            allow_unsealed_tail,
            allow_crash,
            allow_preexisting,
            seals_from,
            logs,
        } => {
            let key = match read_key(&key) {
                Ok(key) => key,
                Err(e) => {
                    eprintln!("prime-audit: --key: {e:#}");
                    return ExitCode::from(2);
                }
            };
            let options = seal::Options {
                until: match until {
                    Until::Now => SystemTime::now(),
                    Until::At(t) => t,
                },
                allow_unsealed_tail,
                allow_crash,
                allow_preexisting,
                seals_from,
            };
            match seal::verify(&key, &logs, &options) {
                Ok(report) => {
                    println!("{report}");
                    ExitCode::SUCCESS
                }
                Err(failure) => {
                    println!("FAILED: {failure}");
                    ExitCode::from(failure.problem.exit_code())
                }
            }
        }
    }
}

/// `keygen`: writes the state and prints the verification key.
fn keygen(state: &std::path::Path, epoch: Duration, start: SystemTime) -> anyhow::Result<()> {
    let key = seal::keygen(state, epoch, start).context("keygen")?;
    println!("{}", key.token().as_str());
    eprintln!(
        "prime-audit: wrote the sealing state {} (mode 0600, key epoch {}); the line above is the \
         verification key: store it off this machine, it can forge any seal",
        state.display(),
        humantime::format_duration(epoch)
    );
    Ok(())
}

/// The key from the argument, or from stdin's first line for `-`.
fn read_key(arg: &str) -> anyhow::Result<VerifyKey> {
    if arg == "-" {
        // Room for the key, so the buffer holding it never reallocates.
        let mut line = Zeroizing::new(String::with_capacity(256));
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the key from stdin")?;
        return Ok(VerifyKey::parse(&line)?);
    }
    Ok(VerifyKey::parse(arg)?)
}
