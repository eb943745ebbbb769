//! The counters, gauges and histograms of a running server, in one
//! Prometheus registry (the official `prometheus-client` crate).
//!
//! One source of truth: every count the shutdown summary prints is read
//! from these same metrics, and `/metrics` (see [`crate::admin`]) encodes
//! them. A counter is incremented in exactly one place.
//!
//! Names follow Prometheus' rules: base units (`_seconds`), `_total` on
//! counters, one prefix per binary (`prime_server_`, `echo_server_`). No
//! label carries client input or a client address: the only labels are
//! the verdict (three values) and the build version.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use std::fmt::Write as _;
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
    /// Terminal log records dropped because stderr could not keep up.
    pub log_records_dropped: Counter,
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
            log_records_dropped: crate::logging::RECORDS_DROPPED.clone(),
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
            "log_records_dropped",
            "Terminal log records dropped because stderr could not keep up",
            self.log_records_dropped.clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from a complete line handed to a worker to its answer audited and its reply queued",
            Unit::Seconds,
            self.request_duration.clone(),
        );
    }
}

/// The audit log's metrics.
#[derive(Debug, Clone)]
pub struct AuditMetrics {
    /// Audit writes that failed (each failed request counts once).
    pub write_failures: Counter,
    /// `fdatasync` calls that failed.
    pub sync_failures: Counter,
    /// How long each `fdatasync` of the audit log took.
    pub sync_duration: Histogram,
    /// Seal records appended to the `.seal` sidecar.
    pub seals: Counter,
    /// Seal attempts that failed.
    pub seal_failures: Counter,
    /// Reopens of the audit log (SIGHUP).
    pub reopens: Counter,
}

impl Default for AuditMetrics {
    fn default() -> Self {
        AuditMetrics {
            write_failures: Counter::default(),
            sync_failures: Counter::default(),
            sync_duration: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            seals: Counter::default(),
            seal_failures: Counter::default(),
            reopens: Counter::default(),
        }
    }
}

impl AuditMetrics {
    /// Registers every metric under `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "audit_write_failures",
            "Requests left unanswered because the audit line could not be written",
            self.write_failures.clone(),
        );
        registry.register(
            "audit_sync_failures",
            "Failed fdatasync calls on the audit log",
            self.sync_failures.clone(),
        );
        registry.register_with_unit(
            "audit_sync_duration",
            "Duration of fdatasync on the audit log",
            Unit::Seconds,
            self.sync_duration.clone(),
        );
        registry.register(
            "audit_seals",
            "Seal records appended to the audit seal file",
            self.seals.clone(),
        );
        registry.register(
            "audit_seal_failures",
            "Seal attempts that failed",
            self.seal_failures.clone(),
        );
        registry.register(
            "audit_reopens",
            "Times the audit log was reopened (SIGHUP)",
            self.reopens.clone(),
        );
    }
}

/// The verdict label of `requests_total`: one of three fixed values.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum VerdictLabel {
    /// `T`: `prime`
    Prime,
    /// `F`: `not_prime`
    NotPrime,
    /// `E`: `not_integer`
    NotInteger,
}

impl EncodeLabelValue for VerdictLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            VerdictLabel::Prime => "prime",
            VerdictLabel::NotPrime => "not_prime",
            VerdictLabel::NotInteger => "not_integer",
        })
    }
}

/// The label set of `requests_total`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    /// Which reply was sent.
    pub verdict: VerdictLabel,
}

/// The label set of `build_info`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    /// The crate version.
    version: String,
}

/// Registers `build_info{version="..."} 1`.
pub fn register_build_info(registry: &mut Registry) {
    let info: Family<BuildLabels, Gauge> = Family::default();
    info.get_or_create(&BuildLabels {
        version: env!("CARGO_PKG_VERSION").to_owned(),
    })
    .set(1);
    registry.register("build_info", "The running build", info);
}

/// A registry with the prefix for `program` (`prime-server` gives
/// `prime_server_...`).
pub fn registry_for(program: &str) -> Registry {
    Registry::with_prefix(program.replace('-', "_"))
}

/// The text exposition of `registry` (OpenMetrics text, which Prometheus
/// scrapes natively).
pub fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}

/// A duration in seconds, as histograms take it.
pub fn seconds(d: Duration) -> f64 {
    d.as_secs_f64()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_rules() {
        let mut registry = registry_for("prime-server");
        CoreMetrics::new().register(&mut registry);
        AuditMetrics::default().register(&mut registry);
        register_build_info(&mut registry);
        let text = encode(&registry);
        assert!(text.contains("# TYPE prime_server_connections_accepted counter"));
        assert!(text.contains("prime_server_connections_accepted_total 0"));
        assert!(text.contains("prime_server_request_duration_seconds_bucket{le=\"0.00005\"} 0"));
        assert!(text.contains("prime_server_build_info{version=\""));
        assert!(text.ends_with("# EOF\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            assert!(name.starts_with("prime_server_"), "{line}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{line}"
            );
        }
    }

    #[test]
    fn clones_share_one_value() {
        let m = CoreMetrics::new();
        let mut registry = registry_for("echo-server");
        m.register(&mut registry);
        m.clone().timeouts.inc();
        assert_eq!(m.timeouts.get(), 1);
        assert!(encode(&registry).contains("echo_server_timeouts_total 1"));
    }
}
