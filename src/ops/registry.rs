//! The counters, gauges and histograms of a running server, in one
//! Prometheus registry (the official `prometheus-client` crate).
//!
//! One source of truth: every count the shutdown summary prints is read
//! from these same metrics, and `/metrics` (see [`crate::ops::admin`]) encodes
//! them. A counter is incremented in exactly one place.
//!
//! Names follow Prometheus' rules: base units (`_seconds`), `_total` on
//! counters, one prefix per binary (`prime_server_`, `echo_server_`). No
//! label carries client input or a client address: the only labels are
//! the verdict (three values) and the build version.

use crate::ops::terminal_log::RECORDS_DROPPED;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

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

/// Registers `log_records_dropped_total`: terminal log records the logger
/// dropped because stderr could not keep up (the counter the logger
/// increments, see [`crate::ops::terminal_log`]).
pub fn register_logging(registry: &mut Registry) {
    registry.register(
        "log_records_dropped",
        "Terminal log records dropped because stderr could not keep up",
        RECORDS_DROPPED.clone(),
    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::AuditMetrics;
    use crate::net::CoreMetrics;

    #[test]
    fn names_follow_prometheus_rules() {
        let mut registry = registry_for("prime-server");
        CoreMetrics::new().register(&mut registry);
        AuditMetrics::default().register(&mut registry);
        register_build_info(&mut registry);
        register_logging(&mut registry);
        let text = encode(&registry);
        assert!(text.contains("prime_server_log_records_dropped_total "));
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
}
