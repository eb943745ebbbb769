//! What the network core counts, whatever the service: connections by
//! where they are, refusals, timeouts, panics, the heavy lane, and how
//! long a request takes. Registered under the binary's prefix by the
//! application; the shutdown summary reads the same counters.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::time::Duration;

/// Latency buckets from 50 us to about 13 s, a factor of 2 apart: wide
/// enough for a line-17 answer and a 4300-digit test behind a queue.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_05, 2.0, 19)
}

/// What the core (accept loop, waiting room, pool, heavy lane) counts,
/// whatever the service.
#[derive(Debug, Clone)]
pub struct CoreMetrics {
    /// Connections accepted (the wake-up connection of a stop excluded).
    pub accepted: Counter,
    /// Connections open now, wherever they are.
    pub open: Gauge,
    /// Connections in the waiting room now (no complete line yet, idle
    /// between lines, flushing to a slow reader, or lingering at close).
    pub waiting: Gauge,
    /// Connections with a complete line queued for a worker now.
    pub queued: Gauge,
    /// Connections being served by a worker now.
    pub in_service: Gauge,
    /// Connections closed because a line did not arrive whole in time, or
    /// a reply could not be written in time.
    pub timeouts: Counter,
    /// Keep-alive connections closed after the idle timeout (not an error).
    pub idle_closed: Counter,
    /// `accept()` calls that failed.
    pub accept_errors: Counter,
    /// Handler panics contained.
    pub panics: Counter,
    /// Connections refused by `--max-connections-per-ip`.
    pub per_ip_refused: Counter,
    /// Connections rejected for a missing, malformed or untrusted PROXY
    /// header.
    pub proxy_rejected: Counter,
    /// Times a connection was held back by `--max-rate-per-ip`.
    pub throttled: Counter,
    /// Connections closed at a stop before sending a complete line.
    pub closed_at_stop: Counter,
    /// Connections still open when `--shutdown-timeout` ran out, closed
    /// without waiting further.
    pub abandoned: Counter,
    /// Heavy-lane jobs (big-number tests) running now.
    pub heavy_running: Gauge,
    /// Heavy-lane jobs waiting for a lane thread now.
    pub heavy_queued: Gauge,
    /// Worker threads (`--workers`): with `in_service`, how busy the pool
    /// is. Set when the core starts.
    pub worker_threads: Gauge,
    /// Heavy-lane threads (`--big-tests`, 0 for a service without a lane):
    /// with `heavy_running`, whether the lane is saturated. Set when the
    /// core starts.
    pub heavy_threads: Gauge,
    /// The connection cap in force (`--max-connections`, after fitting the
    /// open-files limit): with `open`, how close admission is to holding
    /// new clients in the kernel backlog. Set when the core starts.
    pub max_connections: Gauge,
    /// Time from a line being complete at the server (handed to a worker)
    /// to its answer being audited and its reply queued for sending.
    pub request_duration: Histogram,
}

impl Default for CoreMetrics {
    fn default() -> Self {
        CoreMetrics::new()
    }
}

impl CoreMetrics {
    /// Fresh metrics, every count at zero.
    pub fn new() -> CoreMetrics {
        CoreMetrics {
            accepted: Counter::default(),
            open: Gauge::default(),
            waiting: Gauge::default(),
            queued: Gauge::default(),
            in_service: Gauge::default(),
            timeouts: Counter::default(),
            idle_closed: Counter::default(),
            accept_errors: Counter::default(),
            panics: Counter::default(),
            per_ip_refused: Counter::default(),
            proxy_rejected: Counter::default(),
            throttled: Counter::default(),
            closed_at_stop: Counter::default(),
            abandoned: Counter::default(),
            heavy_running: Gauge::default(),
            heavy_queued: Gauge::default(),
            worker_threads: Gauge::default(),
            heavy_threads: Gauge::default(),
            max_connections: Gauge::default(),
            request_duration: Histogram::new(latency_buckets()),
        }
    }

    /// Registers every metric under `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "connections_accepted",
            "Connections accepted",
            self.accepted.clone(),
        );
        registry.register("connections_open", "Connections open", self.open.clone());
        registry.register(
            "connections_waiting",
            "Connections in the waiting room (no complete line, idle, flushing or closing)",
            self.waiting.clone(),
        );
        registry.register(
            "connections_queued",
            "Connections with a complete line waiting for a worker",
            self.queued.clone(),
        );
        registry.register(
            "connections_in_service",
            "Connections being served by a worker",
            self.in_service.clone(),
        );
        registry.register(
            "timeouts",
            "Connections closed because a line or a reply write did not complete in time",
            self.timeouts.clone(),
        );
        registry.register(
            "idle_closes",
            "Keep-alive connections closed after the idle timeout",
            self.idle_closed.clone(),
        );
        registry.register(
            "accept_errors",
            "Failed accept() calls",
            self.accept_errors.clone(),
        );
        registry.register("panics", "Handler panics contained", self.panics.clone());
        registry.register(
            "per_ip_refusals",
            "Connections refused by the per-address connection cap",
            self.per_ip_refused.clone(),
        );
        registry.register(
            "proxy_header_rejections",
            "Connections rejected for a missing, malformed or untrusted PROXY header",
            self.proxy_rejected.clone(),
        );
        registry.register(
            "rate_limited",
            "Times a connection was held back by the per-address rate limit",
            self.throttled.clone(),
        );
        registry.register(
            "closed_at_stop",
            "Connections closed at a stop before sending a complete line",
            self.closed_at_stop.clone(),
        );
        registry.register(
            "abandoned_at_stop",
            "Connections closed when the shutdown timeout ran out",
            self.abandoned.clone(),
        );
        registry.register(
            "big_tests_running",
            "Big-number tests running on the heavy lane",
            self.heavy_running.clone(),
        );
        registry.register(
            "big_tests_queued",
            "Big-number tests waiting for a heavy-lane thread",
            self.heavy_queued.clone(),
        );
        registry.register(
            "worker_threads",
            "Worker threads (connections_in_service is at most this)",
            self.worker_threads.clone(),
        );
        registry.register(
            "big_test_threads",
            "Heavy-lane threads (big_tests_running is at most this)",
            self.heavy_threads.clone(),
        );
        registry.register(
            "max_connections",
            "Connections open at once, at most (past it new ones wait in the kernel backlog)",
            self.max_connections.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from a complete line handed to a worker to its answer audited and its reply queued",
            Unit::Seconds,
            self.request_duration.clone(),
        );
    }

    /// Records the sizes the core runs with, so ratios such as
    /// `in_service / worker_threads` can be computed from a scrape.
    pub fn set_capacity(&self, workers: usize, heavy_threads: usize, max_connections: usize) {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.worker_threads.set(gauge(workers));
        self.heavy_threads.set(gauge(heavy_threads));
        self.max_connections.set(gauge(max_connections));
    }
}

/// A duration in seconds, as histograms take it.
pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_value() {
        let m = CoreMetrics::new();
        let mut registry = Registry::with_prefix("echo_server");
        m.register(&mut registry);
        m.clone().timeouts.inc();
        assert_eq!(m.timeouts.get(), 1);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("echo_server_timeouts_total 1"));
        assert!(text.contains("echo_server_worker_threads 0\n"));
        m.set_capacity(4, 2, 10_000);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("echo_server_worker_threads 4\n"));
        assert!(text.contains("echo_server_big_test_threads 2\n"));
        assert!(text.contains("echo_server_max_connections 10000\n"));
    }
}
