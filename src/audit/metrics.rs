//! What the audit trail counts: failed writes and syncs, sync durations,
//! seals (their duration, heartbeats, failures, shipping) and reopens.
//! Registered by the application under the binary's prefix; the shutdown summary and
//! `/readyz` read the same counters. Every metric is registered whatever
//! the flags, at zero until used.

use crate::audit::seal::ShipMetrics;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

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
    /// How long each seal took (state save and seal append, with fsyncs).
    pub seal_duration: Histogram,
    /// Heartbeat seals (made while nothing was written).
    pub heartbeats: Counter,
    /// 1 while sealing fails (the last attempt failed), else 0.
    pub sealing_failing: Gauge,
    /// Seals shipped off the host (`--seal-syslog`): sent, dropped,
    /// connection failures.
    pub ship: ShipMetrics,
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
            seal_duration: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            heartbeats: Counter::default(),
            sealing_failing: Gauge::default(),
            ship: ShipMetrics::default(),
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
        registry.register_with_unit(
            "audit_seal_duration",
            "Duration of one seal (state save and seal append, with their fsyncs)",
            Unit::Seconds,
            self.seal_duration.clone(),
        );
        registry.register(
            "audit_heartbeat_seals",
            "Heartbeat seals, made while no lines were written",
            self.heartbeats.clone(),
        );
        registry.register(
            "audit_sealing_failing",
            "1 while sealing the audit log fails (the last attempt failed), else 0",
            self.sealing_failing.clone(),
        );
        registry.register(
            "audit_seals_shipped",
            "Seal records sent to the syslog collector (--seal-syslog)",
            self.ship.shipped.clone(),
        );
        registry.register(
            "audit_seals_ship_dropped",
            "Seal records not shipped: the shipping queue was full, or the server stopped first",
            self.ship.dropped.clone(),
        );
        registry.register(
            "audit_seal_ship_failures",
            "Failed connections and writes to the syslog collector",
            self.ship.failures.clone(),
        );
        registry.register(
            "audit_reopens",
            "Times the audit log was reopened (SIGHUP)",
            self.reopens.clone(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sealing metric is exposed from the start, at zero, whatever
    /// the flags (alert rules and dashboards rely on the names).
    #[test]
    fn every_sealing_metric_is_exposed_at_zero() {
        let mut registry = Registry::with_prefix("prime_server");
        AuditMetrics::default().register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "prime_server_audit_seals_total 0",
            "prime_server_audit_seal_failures_total 0",
            "prime_server_audit_seal_duration_seconds_count 0",
            "prime_server_audit_heartbeat_seals_total 0",
            "prime_server_audit_sealing_failing 0",
            "prime_server_audit_seals_shipped_total 0",
            "prime_server_audit_seals_ship_dropped_total 0",
            "prime_server_audit_seal_ship_failures_total 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
        }
    }
}
