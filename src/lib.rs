//! prime-server: a TCP service that tells whether a line holds a prime.
//!
//! A client connects, sends one line, and gets back `T\n` (prime), `F\n`
//! (an integer, not prime) or `E\n` (not an integer); every answer is first
//! appended to an audit log. Integers are parsed exactly as Python's
//! `int(bytes)` parses them, up to 4300 digits.
//!
//! # Architecture
//!
//! ```text
//!  TcpListener --accept--> [server] --slot--> threadpool --> Handler::handle
//!   (blocking)              admission,         (fixed size)    [service]
//!                           back-off,                            |  read line [conn]
//!                           shutdown drain                       |  parse     [parse]
//!                                                                |  decide    [prime]
//!                                                                |  audit     [audit]
//!                                                                '  reply     [protocol]
//! ```
//!
//! | module | concern |
//! | --- | --- |
//! | [`config`] | command-line flags and env vars, turned into [`Config`] |
//! | [`server`] | the generic core: bind, accept loop, admission, pool, panics |
//! | [`shutdown`] | the stop flag, waking `accept()`, SIGINT/SIGTERM |
//! | [`conn`] | one connection: line framing, deadlines, line limit, close |
//! | [`protocol`] | the [`Verdict`](protocol::Verdict) and audit phrases |
//! | [`parse`] | Python's `int()` grammar on bytes |
//! | [`prime`] | primality: exact below 2^64, Baillie-PSW above |
//! | [`audit`] | the append-only audit log |
//! | [`seal`] | forward-secure seals over the audit log, and their verification (`prime-audit`) |
//! | [`escape`] | making client bytes safe for any log |
//! | [`service`] | the prime [`Handler`](server::Handler) tying it together |
//! | [`logging`] | the terminal logger (slog-term/json behind slog-async) |
//! | [`sync`] | the counting semaphore used for rationing |
//! | [`client`] | the client side, used by `prime-client` |
//! | [`echo`] | the echo service: a second [`Handler`](server::Handler) on the same core |
//! | [`cli`] | start-up and exit shared by the server binaries |
//!
//! [`run`] is the entry point: `main` parses flags, builds the logger, binds,
//! installs the signal handler and calls it; tests call it the same way on
//! `127.0.0.1:0`.

pub mod audit;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn;
pub mod echo;
pub mod escape;
pub mod logging;
pub mod parse;
pub mod prime;
pub mod protocol;
pub mod seal;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod sync;

use crate::audit::{AuditError, AuditLog};
use crate::protocol::Verdict;
use crate::server::ServerOptions;
use crate::service::{PrimeOptions, PrimeService};
use crate::shutdown::Shutdown;
use slog::{info, warn, Logger};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use thiserror::Error;

/// Everything [`run`] needs besides the listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The audit log file.
    pub audit_log: PathBuf,
    /// The core's options: pool size, admission, deadlines.
    pub server: ServerOptions,
    /// The prime service's options.
    pub prime: PrimeOptions,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            audit_log: PathBuf::from("logs/prime_server.log"),
            server: ServerOptions::default(),
            prime: PrimeOptions::default(),
        }
    }
}

/// Why [`run`] could not serve.
#[derive(Debug, Error)]
pub enum RunError {
    /// The audit log could not be opened; nothing can be answered without it.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The listener could not be prepared.
    #[error("cannot prepare the listener: {0}")]
    Listener(#[from] std::io::Error),
}

/// What the server did, as reported at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `T` replies.
    pub prime: u64,
    /// `F` replies.
    pub not_prime: u64,
    /// `E` replies.
    pub not_integer: u64,
    /// Connections handed to workers.
    pub connections: u64,
    /// Connections closed for slowness, without a reply.
    pub timeouts: u64,
    /// Requests unanswered because the audit log failed.
    pub audit_failures: u64,
    /// Handler panics contained.
    pub panics: u64,
    /// Failed `accept()` calls.
    pub accept_errors: u64,
    /// How long the server ran.
    pub uptime: Duration,
}

impl Summary {
    /// Replies sent, of every kind.
    pub fn answered(&self) -> u64 {
        self.prime + self.not_prime + self.not_integer
    }
}

/// Serves the prime protocol on `listener` until `shutdown` is requested,
/// then finishes every accepted connection, syncs the audit log, logs a
/// summary and returns it.
///
/// # Errors
///
/// [`RunError`] when the audit log cannot be opened or the listener cannot
/// be registered for wake-up; errors while serving are logged, not returned.
pub fn run(
    listener: TcpListener,
    shutdown: Shutdown,
    config: &Config,
    log: &Logger,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let audit = AuditLog::open(&config.audit_log)?;
    info!(log, "starting prime-server";
        "big_tests" => config.prime.big_tests,
        "keep_alive" => config.prime.keep_alive.is_some(),
        "audit_log" => %config.audit_log.display(),
        "pid" => std::process::id(),
        "version" => env!("CARGO_PKG_VERSION"));
    let service = Arc::new(PrimeService::new(audit, config.prime));
    let core = server::serve(
        listener,
        &shutdown,
        Arc::clone(&service),
        &config.server,
        log,
    )?;
    if let Err(e) = service.audit().sync() {
        warn!(log, "cannot sync the audit log"; "error" => %e);
    }
    let stats = service.stats();
    let summary = Summary {
        prime: stats.count(Verdict::Prime),
        not_prime: stats.count(Verdict::NotPrime),
        not_integer: stats.count(Verdict::NotInteger),
        connections: core.connections.load(Ordering::Relaxed),
        timeouts: stats.timeouts.load(Ordering::Relaxed),
        audit_failures: stats.audit_failures.load(Ordering::Relaxed),
        panics: core.panics.load(Ordering::Relaxed),
        accept_errors: core.accept_errors.load(Ordering::Relaxed),
        uptime: started.elapsed(),
    };
    info!(log, "shutdown complete";
        "prime" => summary.prime,
        "not_prime" => summary.not_prime,
        "not_integer" => summary.not_integer,
        "connections" => summary.connections,
        "timeouts" => summary.timeouts,
        "audit_failures" => summary.audit_failures,
        "panics" => summary.panics,
        "accept_errors" => summary.accept_errors,
        "uptime" => %logging::rounded(summary.uptime));
    Ok(summary)
}
