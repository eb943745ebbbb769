//! The echo service: for each line received, reply `GOT:` plus the line.
//!
//! It exists to show that the core is generic, the way Python's
//! `socketserver` separates the server from the request handler: this is
//! only a [`Handler`]; the accept loop, the waiting room, the pool,
//! admission, deadlines, the line limit, logging and graceful shutdown are
//! the same code the prime service runs on.
//!
//! A connection carries any number of lines and ends at EOF, after the idle
//! timeout without a new line, or when a line passes the line limit (it is
//! then closed without a reply). Like every connection of the core, it
//! holds a worker only while it has complete lines to answer: thousands of
//! idle echo clients cost no thread.

use crate::conn::{Connection, Line};
use crate::escape::escape_bytes;
use crate::health::Health;
use crate::metrics::{register_build_info, registry_for, CoreMetrics};
use crate::server::{self, ServerOptions};
use crate::shutdown::Shutdown;
use crate::worker::{Flow, Handler};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use slog::{debug, info, warn, Drain, Logger};
use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The prefix of every echo reply.
pub const PREFIX: &[u8] = b"GOT:";
/// How many bytes of a line a debug record quotes at most.
const LOGGED_LINE_LIMIT: usize = 64;

/// The echo handler, counting what it did.
#[derive(Debug, Default)]
pub struct EchoService {
    /// Lines echoed.
    lines: Counter,
    /// Connections closed for an over-long line.
    too_long: Counter,
}

impl EchoService {
    /// Registers the echo service's counters.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("lines", "Lines echoed", self.lines.clone());
        registry.register(
            "lines_too_long",
            "Connections closed for a line longer than the limit",
            self.too_long.clone(),
        );
    }
}

impl Handler for EchoService {
    type Heavy = Infallible;

    fn serve(&self, conn: &mut Connection, log: &Logger) -> Flow<Infallible> {
        while let Some(line) = conn.next_line() {
            match line {
                Line::Complete(line) => {
                    if log.is_debug_enabled() {
                        debug!(log, "echo"; "peer" => %conn.peer(),
                            "line" => escape_bytes(&line, LOGGED_LINE_LIMIT).quoted());
                    }
                    conn.queue_reply(PREFIX);
                    conn.queue_reply(&line);
                    conn.queue_reply(b"\n");
                    self.lines.inc();
                }
                Line::TooLong(_) => {
                    self.too_long.inc();
                    warn!(log, "line longer than the limit; closing"; "peer" => %conn.peer());
                    return Flow::Close;
                }
            }
        }
        if conn.at_eof() {
            Flow::Close
        } else {
            Flow::Continue
        }
    }

    fn serve_heavy(&self, job: Infallible, _: &mut Connection, _: &Logger) -> Flow<Infallible> {
        match job {}
    }
}

/// What the echo server did, as reported at shutdown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoSummary {
    /// Lines echoed.
    pub lines: u64,
    /// Connections accepted.
    pub connections: u64,
    /// Connections closed because a line did not arrive whole in time.
    pub timeouts: u64,
    /// Connections closed for an over-long line.
    pub too_long: u64,
    /// Handler panics contained.
    pub panics: u64,
    /// Connections closed when the shutdown timeout ran out.
    pub abandoned: u64,
    /// How long the server ran.
    pub uptime: Duration,
}

/// An echo server, with its metrics and health, ready to run.
#[derive(Debug)]
pub struct EchoServer {
    /// The core's options (no heavy lane).
    options: ServerOptions,
    /// The handler.
    service: Arc<EchoService>,
    /// The core's counters.
    core: CoreMetrics,
    /// Every counter, for `/metrics`.
    registry: Arc<Registry>,
    /// For `/readyz`, `/livez` and the watchdog.
    health: Arc<Health>,
    /// The server's logger.
    log: Logger,
    /// When it was opened.
    started: Instant,
}

impl EchoServer {
    /// Builds the service and its metrics.
    pub fn open(options: &ServerOptions, log: &Logger) -> EchoServer {
        info!(log, "starting echo-server"; "pid" => std::process::id(), "version" => env!("CARGO_PKG_VERSION"));
        let service = Arc::new(EchoService::default());
        let core = CoreMetrics::new();
        let mut registry = registry_for("echo-server");
        core.register(&mut registry);
        service.register(&mut registry);
        register_build_info(&mut registry);
        EchoServer {
            options: ServerOptions {
                heavy_threads: 0,
                ..options.clone()
            },
            service,
            core,
            registry: Arc::new(registry),
            health: Health::new(),
            log: log.clone(),
            started: Instant::now(),
        }
    }

    /// The registry `/metrics` encodes.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// The health `/readyz` and the watchdog read.
    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    /// Serves until `shutdown` is requested, then finishes every accepted
    /// connection, logs a summary and returns it.
    ///
    /// # Errors
    ///
    /// The listener could not be prepared (see [`server::serve`]).
    pub fn run(self, listener: TcpListener, shutdown: Shutdown) -> std::io::Result<EchoSummary> {
        server::serve(
            listener,
            &shutdown,
            Arc::clone(&self.service),
            &self.options,
            &self.core,
            &self.health,
            &self.log,
        )?;
        let summary = EchoSummary {
            lines: self.service.lines.get(),
            connections: self.core.accepted.get(),
            timeouts: self.core.timeouts.get(),
            too_long: self.service.too_long.get(),
            panics: self.core.panics.get(),
            abandoned: self.core.abandoned.get(),
            uptime: self.started.elapsed(),
        };
        info!(self.log, "shutdown complete";
            "lines" => summary.lines,
            "connections" => summary.connections,
            "timeouts" => summary.timeouts,
            "too_long" => summary.too_long,
            "panics" => summary.panics,
            "abandoned" => summary.abandoned,
            "log_records_dropped" => self.core.log_records_dropped.get(),
            "uptime" => %crate::logging::rounded(summary.uptime));
        Ok(summary)
    }
}

impl crate::cli::Served for EchoServer {
    fn registry(&self) -> Arc<Registry> {
        EchoServer::registry(self)
    }

    fn health(&self) -> Arc<Health> {
        EchoServer::health(self)
    }

    fn reloader(&self) -> Option<crate::shutdown::Reload> {
        None
    }

    fn serve(self, listener: TcpListener, shutdown: Shutdown) -> anyhow::Result<()> {
        self.run(listener, shutdown)?;
        Ok(())
    }
}

/// Serves the echo protocol until `shutdown` is requested
/// ([`EchoServer::open`], then [`EchoServer::run`]).
///
/// # Errors
///
/// The listener could not be prepared (see [`server::serve`]).
pub fn run(
    listener: TcpListener,
    shutdown: Shutdown,
    options: &ServerOptions,
    log: &Logger,
) -> std::io::Result<EchoSummary> {
    EchoServer::open(options, log).run(listener, shutdown)
}
