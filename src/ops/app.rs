//! The application around a service: [`Server`] opens a [`Service`] on the
//! network core with its metrics and health, runs it on a listener until
//! the stop, and reports what it did in a [`Summary`]. The prime server and
//! the echo server are the same type with a different service
//! (`Server<PrimeService>`, `Server<EchoService>`).
//!
//! One source of truth: the summary logged at shutdown is read from the
//! very counters `/metrics` serves.

use crate::net::CoreMetrics;
use crate::net::Handler;
use crate::net::ServerOptions;
use crate::net::Shutdown;
use crate::ops::health::{register_ready, Health};
use crate::ops::registry::{register_build_info, register_logging, registry_for};
use crate::ops::signals::Reload;
use crate::ops::terminal_log::{rounded, RECORDS_DROPPED};
use prometheus_client::registry::Registry;
use slog::{info, Logger, Record, Serializer, KV};
use std::fmt;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A service the server binaries run: a [`Handler`] and what the
/// application needs of it besides.
pub trait Service: Handler {
    /// The binary's name: the metrics prefix (`prime-server` gives
    /// `prime_server_...`) and the start record's.
    const NAME: &'static str;

    /// The service's own counts in the shutdown summary, logged as
    /// key-value pairs.
    type Summary: KV + fmt::Debug + Clone + PartialEq + Send + 'static;

    /// Registers the service's metrics.
    fn register(&self, registry: &mut Registry);

    /// Why the service cannot take traffic now, if it cannot (`/readyz`
    /// says 503 with this reason).
    fn unready(&self) -> Option<String> {
        None
    }

    /// What SIGHUP does (reopen the files the service writes); `None` when
    /// there is nothing to reopen.
    fn reloader(self: &Arc<Self>) -> Option<Reload> {
        None
    }

    /// Finishes after the core has stopped: every answer has been given,
    /// so flush and close what the service writes.
    fn finish(&self, _log: &Logger) {}

    /// The service's counts, read from its metrics.
    fn summary(&self) -> Self::Summary;
}

/// What a server did, as reported at shutdown: the service's counts and
/// the core's, read from the same metrics `/metrics` serves.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary<S> {
    /// The service's own counts (replies by verdict, lines echoed, ...).
    pub service: S,
    /// Connections accepted.
    pub connections: u64,
    /// Connections closed for slowness, without a reply.
    pub timeouts: u64,
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
    /// Terminal log records dropped because stderr could not keep up.
    pub log_records_dropped: u64,
    /// How long the server ran.
    pub uptime: Duration,
}

impl<S: KV> KV for Summary<S> {
    fn serialize(&self, record: &Record<'_>, serializer: &mut dyn Serializer) -> slog::Result {
        self.service.serialize(record, serializer)?;
        serializer.emit_u64("connections", self.connections)?;
        serializer.emit_u64("timeouts", self.timeouts)?;
        serializer.emit_u64("panics", self.panics)?;
        serializer.emit_u64("accept_errors", self.accept_errors)?;
        serializer.emit_u64("proxy_rejected", self.proxy_rejected)?;
        serializer.emit_u64("closed_at_stop", self.closed_at_stop)?;
        serializer.emit_u64("abandoned", self.abandoned)?;
        serializer.emit_u64("log_records_dropped", self.log_records_dropped)?;
        serializer.emit_arguments("uptime", &format_args!("{}", rounded(self.uptime)))
    }
}

/// A service opened on the core (metrics registered, health wired) and
/// ready to run on a listener. `main` and the tests take its registry and
/// health in between, to serve `/metrics` and `/readyz`.
pub struct Server<S: Service> {
    /// The service.
    service: Arc<S>,
    /// The core's options.
    options: ServerOptions,
    /// The core's counters, for the summary.
    metrics: CoreMetrics,
    /// Every counter, for `/metrics`.
    registry: Arc<Registry>,
    /// For `/readyz`, `/livez` and the watchdog.
    health: Arc<Health>,
    /// The server's logger.
    log: Logger,
    /// When it was opened.
    started: Instant,
}

impl<S: Service> fmt::Debug for Server<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("service", &S::NAME)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl<S: Service> Server<S> {
    /// Registers the metrics of `service` and of the core, and adds the
    /// service's readiness check to the health.
    pub fn open(service: S, options: &ServerOptions, log: &Logger) -> Server<S> {
        info!(log, "starting {}", S::NAME;
            "workers" => options.workers,
            "heavy_threads" => options.heavy_threads,
            "pid" => std::process::id(),
            "version" => env!("CARGO_PKG_VERSION"));
        let service = Arc::new(service);
        let metrics = CoreMetrics::new();
        let health = Health::new();
        let mut registry = registry_for(S::NAME);
        metrics.register(&mut registry);
        service.register(&mut registry);
        register_logging(&mut registry);
        register_ready(&health, &mut registry);
        register_build_info(&mut registry);
        let checked = Arc::clone(&service);
        health.add_check(Box::new(move || checked.unready()));
        Server {
            service,
            options: options.clone(),
            metrics,
            registry: Arc::new(registry),
            health,
            log: log.clone(),
            started: Instant::now(),
        }
    }

    /// The service (its counters keep counting while it runs).
    pub fn service(&self) -> &Arc<S> {
        &self.service
    }

    /// The core's counters (shared: they keep counting while it runs).
    pub fn core_metrics(&self) -> &CoreMetrics {
        &self.metrics
    }

    /// The registry `/metrics` encodes.
    pub fn registry(&self) -> Arc<Registry> {
        Arc::clone(&self.registry)
    }

    /// The health `/readyz`, `/livez` and the watchdog read.
    pub fn health(&self) -> Arc<Health> {
        Arc::clone(&self.health)
    }

    /// What SIGHUP does, if anything.
    pub fn reloader(&self) -> Option<Reload> {
        self.service.reloader()
    }

    /// Serves on `listener` until `shutdown` is requested, then finishes
    /// every accepted connection and the service, logs a summary and
    /// returns it.
    ///
    /// # Errors
    ///
    /// The core could not start (the room's poller, a thread, registering
    /// the listener for the stop's wake-up); errors while serving are
    /// logged, not returned.
    pub fn run(
        self,
        listener: TcpListener,
        shutdown: Shutdown,
    ) -> std::io::Result<Summary<S::Summary>> {
        crate::net::serve(
            listener,
            &shutdown,
            Arc::clone(&self.service),
            &self.options,
            &self.metrics,
            self.health.liveness(),
            &self.log,
        )?;
        self.service.finish(&self.log);
        let core = &self.metrics;
        let summary = Summary {
            service: self.service.summary(),
            connections: core.accepted.get(),
            timeouts: core.timeouts.get(),
            panics: core.panics.get(),
            accept_errors: core.accept_errors.get(),
            proxy_rejected: core.proxy_rejected.get(),
            closed_at_stop: core.closed_at_stop.get(),
            abandoned: core.abandoned.get(),
            log_records_dropped: RECORDS_DROPPED.get(),
            uptime: self.started.elapsed(),
        };
        info!(self.log, "shutdown complete"; &summary);
        Ok(summary)
    }
}
