//! What `/livez`, `/readyz` and the systemd watchdog ask of a running
//! server, answered from one place.
//!
//! * **Ready** (`/readyz`): the server is listening, is not stopping, and
//!   every registered check passes (the audit log is writable and its last
//!   sync succeeded). A stop turns it not-ready at once, so a load balancer
//!   stops sending new connections while the accepted ones finish.
//! * **Alive** (`/livez`, the watchdog): the core's own check
//!   ([`Liveness::alive`]): the pool runs jobs, the waiting room turns,
//!   the accept loop is not stuck.

use crate::net::Liveness;
use parking_lot::Mutex;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

/// A readiness check: `Some(reason)` when not ready.
pub type Check = Box<dyn Fn() -> Option<String> + Send + Sync>;

/// The server's health: the core's liveness marks and the service's
/// readiness checks.
pub struct Health {
    /// Updated by the core as it works.
    liveness: Arc<Liveness>,
    /// Extra readiness checks (the audit log's).
    checks: Mutex<Vec<Check>>,
}

impl std::fmt::Debug for Health {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Health")
            .field("liveness", &self.liveness)
            .finish_non_exhaustive()
    }
}

impl Health {
    /// A fresh, not-yet-listening health.
    pub fn new() -> Arc<Health> {
        Arc::new(Health {
            liveness: Liveness::new(),
            checks: Mutex::new(Vec::new()),
        })
    }

    /// The marks the core updates (given to it when it starts).
    pub fn liveness(&self) -> &Arc<Liveness> {
        &self.liveness
    }

    /// Adds a readiness check.
    pub fn add_check(&self, check: Check) {
        self.checks.lock().push(check);
    }

    /// Whether a stop was requested.
    pub fn is_stopping(&self) -> bool {
        self.liveness.is_stopping()
    }

    /// `Ok` when the server should get traffic; the reason otherwise.
    ///
    /// # Errors
    ///
    /// A one-line reason: stopping, not listening, or a failed check.
    pub fn ready(&self) -> Result<(), String> {
        if self.liveness.is_stopping() {
            return Err("stopping".into());
        }
        if !self.liveness.is_listening() {
            return Err("not listening".into());
        }
        match self.checks.lock().iter().find_map(|check| check()) {
            Some(reason) => Err(reason),
            None => Ok(()),
        }
    }

    /// `Ok` when requests can make progress (see [`Liveness::alive`]).
    ///
    /// # Errors
    ///
    /// A one-line reason naming the part that is stuck.
    pub fn alive(&self, within: Duration) -> Result<(), String> {
        self.liveness.alive(within)
    }
}

/// `ready`: 1 when [`Health::ready`] says ready, else 0, computed when
/// `/metrics` is scraped (it asks the same checks `/readyz` asks), so it
/// cannot go stale and needs no thread to keep it current. An alert on
/// "not ready for a while" needs it: a scrape of `/readyz` is not a series.
#[derive(Debug)]
struct ReadyGauge(Arc<Health>);

impl EncodeMetric for ReadyGauge {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&i64::from(self.0.ready().is_ok()))
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Gauge
    }
}

/// Registers `ready` (see [`ReadyGauge`]) for `health`.
pub fn register_ready(health: &Arc<Health>, registry: &mut Registry) {
    registry.register(
        "ready",
        "1 when /readyz answers 200 (listening, not stopping, the audit log writable and synced), else 0",
        ReadyGauge(Arc::clone(health)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn ready_only_while_listening_and_not_stopping_and_checks_pass() {
        let health = Health::new();
        assert_eq!(health.ready(), Err("not listening".into()));
        health.liveness().set_listening(true);
        assert_eq!(health.ready(), Ok(()));
        let failing = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&failing);
        health.add_check(Box::new(move || {
            flag.load(Ordering::SeqCst).then(|| "disk full".to_owned())
        }));
        assert_eq!(health.ready(), Err("disk full".into()));
        failing.store(false, Ordering::SeqCst);
        assert_eq!(health.ready(), Ok(()));
        health.liveness().set_stopping();
        assert_eq!(health.ready(), Err("stopping".into()));
    }

    #[test]
    fn the_ready_gauge_is_computed_at_each_scrape() {
        let health = Health::new();
        let mut registry = Registry::with_prefix("prime_server");
        register_ready(&health, &mut registry);
        let scrape = || crate::ops::registry::encode(&registry);
        assert!(
            scrape().contains("\nprime_server_ready 0\n"),
            "{}",
            scrape()
        );
        health.liveness().set_listening(true);
        assert!(
            scrape().contains("\nprime_server_ready 1\n"),
            "{}",
            scrape()
        );
        health.liveness().set_stopping();
        assert!(
            scrape().contains("\nprime_server_ready 0\n"),
            "{}",
            scrape()
        );
    }
}
