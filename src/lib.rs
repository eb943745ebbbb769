//! prime-server: a TCP service that tells whether a line holds a prime.
//!
//! A client connects, sends one line, and gets back `T\n` (prime), `F\n`
//! (an integer, not prime) or `E\n` (not an integer); every answer is first
//! appended to an audit log. Integers are parsed exactly as Python's
//! `int(bytes)` parses them, up to 4300 digits.
//!
//! # Architecture
//!
//! One job per thread, as in Tomcat's NIO connector (Acceptor, Poller,
//! Executor), around the user's blocking accept loop and fixed pool:
//!
//! ```text
//!  TcpListener --accept--> [server] ---- line already there? ----yes---.
//!   (blocking)             admission,      | no                         v
//!                          PROXY trust     v                     threadpool worker [worker]
//!                                       [room] --line complete-->  Handler::serve [service, echo]
//!                                  one mio thread:                   parse  [parse]
//!                                  waiting for a line,               decide [prime]
//!                                  slow readers, idle               audit  [audit] -> [seal]
//!                                  keep-alive, lingering,           reply  [conn]
//!                                  rate-limited; deadlines             |  big number?
//!                                       ^                              v
//!                                       '--- no line buffered ---  [lane] heavy lane,
//!                                                                   fair by address
//! ```
//!
//! A connection holds a worker only while it has a complete line to
//! answer: stalled, idle and slow clients wait in the room, and numbers
//! above 2^128 wait for the heavy lane, so no client can starve the others.
//!
//! | module | concern |
//! | --- | --- |
//! | [`config`] | command-line flags and env vars (bounded), turned into [`Config`] |
//! | [`cli`] | start-up and exit shared by the server binaries: bind or inherit, admin, signals, systemd |
//! | [`server`] | the accept loop: bind, admission, accept back-off, fast path, the stop sequence |
//! | [`room`] | the waiting room: readiness (mio), deadlines, slow readers, lingering closes |
//! | [`worker`] | what a worker does with a ready connection: a turn, replies, where it goes next |
//! | [`lane`] | the heavy lane: threads of its own, a queue fair by client address |
//! | [`clients`] | per-address connection cap and rate limit |
//! | [`conn`] | one connection: non-blocking line framing, line limit, replies, close |
//! | [`proxy`] | PROXY protocol v1/v2 headers from a byte buffer, and `--trusted-proxies` |
//! | [`shutdown`] | the stop flag, waking `accept()`, SIGINT/SIGTERM/SIGHUP |
//! | [`protocol`] | the [`Verdict`] and audit phrases |
//! | [`parse`] | Python's `int()` grammar on bytes |
//! | [`prime`] | primality: exact below 2^64, Baillie-PSW above |
//! | [`service`] | the prime [`Handler`](worker::Handler): parse, decide, audit, reply |
//! | [`echo`] | the echo service: a second [`Handler`](worker::Handler) on the same core |
//! | [`audit`] | the audit file: whole lines only, sync policy (group commit), reopen |
//! | [`seal`] | forward-secure seals over the audit log, and their verification (`prime-audit`) |
//! | [`escape`] | making client bytes safe for any log |
//! | [`metrics`] | the counters and histograms (one registry; the summary reads the same values) |
//! | [`health`] | readiness and liveness, for `/readyz` and the systemd watchdog |
//! | [`admin`] | the small HTTP listener for `/metrics`, `/livez`, `/readyz` |
//! | [`systemd`] | `sd_notify` readiness, reload, stop and watchdog |
//! | [`logging`] | the terminal logger (slog-term/json behind slog-async), never blocking |
//! | [`sync`] | the counting semaphore behind `--max-connections` |
//! | [`client`] | the client side, used by `prime-client` and `prime-bench` |
//!
//! [`run`] is the entry point ([`PrimeServer::open`] then
//! [`PrimeServer::run`]): `main` parses flags, builds the logger, binds,
//! installs the signal handlers and calls them; tests call them the same way
//! on `127.0.0.1:0`.

pub mod admin;
pub mod audit;
pub mod cli;
pub mod client;
pub mod clients;
pub mod config;
pub mod conn;
pub mod echo;
pub mod escape;
pub mod health;
pub mod lane;
pub mod logging;
pub mod metrics;
pub mod parse;
pub mod prime;
pub mod protocol;
pub mod proxy;
pub mod room;
pub mod seal;
pub mod server;
pub mod service;
pub mod shutdown;
pub mod sync;
pub mod systemd;
pub mod worker;

use crate::audit::{AuditError, AuditLog, SealOptions, SyncPolicy};
use crate::health::Health;
use crate::metrics::{register_build_info, registry_for, AuditMetrics, CoreMetrics};
use crate::protocol::Verdict;
use crate::server::ServerOptions;
use crate::service::{PrimeMetrics, PrimeOptions, PrimeService};
use crate::shutdown::Shutdown;
use prometheus_client::registry::Registry;
use slog::{info, warn, Logger};
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use std::time::Instant;
use thiserror::Error;

/// Everything [`run`] needs besides the listener.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The audit log file.
    pub audit_log: PathBuf,
    /// How durable an answered request's audit line is.
    pub audit_sync: SyncPolicy,
    /// `Some` to seal the audit log (forward-secure, see [`seal`]).
    pub audit_seal: Option<SealOptions>,
    /// The core's options: pool, waiting room, lane, admission, deadlines.
    pub server: ServerOptions,
    /// The prime service's options.
    pub prime: PrimeOptions,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            audit_log: PathBuf::from("logs/prime_server.log"),
            audit_sync: SyncPolicy::None,
            audit_seal: None,
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

/// What the server did, as reported at shutdown; read from the same
/// metrics `/metrics` serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// `T` replies.
    pub prime: u64,
    /// `F` replies.
    pub not_prime: u64,
    /// `E` replies.
    pub not_integer: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Connections closed for slowness, without a reply.
    pub timeouts: u64,
    /// Requests unanswered because the audit log failed.
    pub audit_failures: u64,
    /// Handler panics contained.
    pub panics: u64,
    /// Failed `accept()` calls.
    pub accept_errors: u64,
    /// Connections rejected for a bad or untrusted PROXY header.
    pub proxy_rejected: u64,
    /// Connections closed at the stop before sending a complete line.
    pub closed_at_stop: u64,
    /// Connections closed because the shutdown timeout ran out.
    pub abandoned: u64,
    /// How long the server ran.
    pub uptime: Duration,
}

impl Summary {
    /// Replies sent, of every kind.
    pub fn answered(&self) -> u64 {
        self.prime + self.not_prime + self.not_integer
    }
}

/// The metrics of a prime server, all registered in one registry.
#[derive(Debug, Clone, Default)]
pub struct ServerMetrics {
    /// The core's.
    pub core: CoreMetrics,
    /// The audit log's.
    pub audit: AuditMetrics,
    /// Replies by verdict.
    pub prime: PrimeMetrics,
}

/// A prime server, opened (audit log, metrics, health) and ready to run on
/// a listener. [`run`] does both steps; the binary and tests that want the
/// metrics or health take them in between.
#[derive(Debug)]
pub struct PrimeServer {
    /// The configuration.
    config: Config,
    /// The handler (it owns the audit log).
    service: Arc<PrimeService>,
    /// Every counter, for the summary.
    metrics: ServerMetrics,
    /// The same counters, for `/metrics`.
    registry: Arc<Registry>,
    /// For `/readyz`, `/livez` and the watchdog.
    health: Arc<Health>,
    /// The server's logger.
    log: Logger,
    /// When it was opened.
    started: Instant,
}

impl PrimeServer {
    /// Opens the audit log and builds the metrics.
    ///
    /// # Errors
    ///
    /// [`RunError::Audit`] when the audit log cannot be opened.
    pub fn open(config: &Config, log: &Logger) -> Result<PrimeServer, RunError> {
        let started = Instant::now();
        let metrics = ServerMetrics::default();
        let audit = AuditLog::open(
            &config.audit_log,
            config.audit_sync,
            config.audit_seal.as_ref(),
            metrics.audit.clone(),
            log,
        )?;
        info!(log, "starting prime-server";
            "big_tests" => config.server.heavy_threads,
            "keep_alive" => config.prime.keep_alive.is_some(),
            "audit_log" => %config.audit_log.display(),
            "audit_sync" => %config.audit_sync,
            "pid" => std::process::id(),
            "version" => env!("CARGO_PKG_VERSION"));
        let mut registry = registry_for("prime-server");
        metrics.core.register(&mut registry);
        metrics.audit.register(&mut registry);
        metrics.prime.register(&mut registry);
        register_build_info(&mut registry);
        let service = Arc::new(PrimeService::new(
            audit,
            config.prime,
            metrics.prime.clone(),
            metrics.audit.clone(),
        ));
        let health = Health::new();
        let checked = Arc::clone(&service);
        health.add_check(Box::new(move || {
            checked.audit().problem().map(str::to_owned)
        }));
        Ok(PrimeServer {
            config: config.clone(),
            service,
            metrics,
            registry: Arc::new(registry),
            health,
            log: log.clone(),
            started,
        })
    }

    /// The counters (shared: they keep counting while the server runs).
    pub fn metrics(&self) -> &ServerMetrics {
        &self.metrics
    }

    /// The registry `/metrics` encodes.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// The health `/readyz` and the watchdog read.
    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    /// The audit log (to reopen it on SIGHUP).
    pub fn audit(&self) -> &AuditLog {
        self.service.audit()
    }

    /// Serves the prime protocol on `listener` until `shutdown` is
    /// requested, then finishes every accepted connection, syncs the audit
    /// log, logs a summary and returns it.
    ///
    /// # Errors
    ///
    /// [`RunError::Listener`] when the listener cannot be prepared; errors
    /// while serving are logged, not returned.
    pub fn run(self, listener: TcpListener, shutdown: Shutdown) -> Result<Summary, RunError> {
        let log = &self.log;
        server::serve(
            listener,
            &shutdown,
            Arc::clone(&self.service),
            &self.config.server,
            &self.metrics.core,
            &self.health,
            log,
        )?;
        if let Err(e) = self.service.audit().sync() {
            warn!(log, "cannot sync the audit log"; "error" => %e);
        }
        self.service.audit().close();
        let core = &self.metrics.core;
        let prime = &self.metrics.prime;
        let summary = Summary {
            prime: prime.count(Verdict::Prime),
            not_prime: prime.count(Verdict::NotPrime),
            not_integer: prime.count(Verdict::NotInteger),
            connections: core.accepted.get(),
            timeouts: core.timeouts.get(),
            audit_failures: self.metrics.audit.write_failures.get(),
            panics: core.panics.get(),
            accept_errors: core.accept_errors.get(),
            proxy_rejected: core.proxy_rejected.get(),
            closed_at_stop: core.closed_at_stop.get(),
            abandoned: core.abandoned.get(),
            uptime: self.started.elapsed(),
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
            "proxy_rejected" => summary.proxy_rejected,
            "closed_at_stop" => summary.closed_at_stop,
            "abandoned" => summary.abandoned,
            "log_records_dropped" => core.log_records_dropped.get(),
            "uptime" => %logging::rounded(summary.uptime));
        Ok(summary)
    }
}

impl cli::Served for PrimeServer {
    fn registry(&self) -> Arc<Registry> {
        PrimeServer::registry(self)
    }

    fn health(&self) -> Arc<Health> {
        PrimeServer::health(self)
    }

    fn reloader(&self) -> Option<shutdown::Reload> {
        let service = Arc::clone(&self.service);
        Some(Box::new(move || {
            service.audit().reopen().map_err(|e| {
                anyhow::anyhow!("cannot reopen {}: {e}", service.audit().path().display())
            })
        }))
    }

    fn serve(self, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
        self.run(listener, shutdown)?;
        Ok(())
    }
}

/// Serves the prime protocol on `listener` until `shutdown` is requested
/// ([`PrimeServer::open`], then [`PrimeServer::run`]).
///
/// # Errors
///
/// [`RunError`] when the audit log cannot be opened or the listener cannot
/// be prepared; errors while serving are logged, not returned.
pub fn run(
    listener: TcpListener,
    shutdown: Shutdown,
    config: &Config,
    log: &Logger,
) -> Result<Summary, RunError> {
    PrimeServer::open(config, log)?.run(listener, shutdown)
}
