//! systemd integration, a no-op without systemd: readiness notifications
//! (`READY=1` once the listener is bound and the audit log open,
//! `STOPPING=1` when a stop begins, `RELOADING=1` around an audit-log
//! reopen) and the watchdog.
//!
//! With `WatchdogSec=` set in the unit, systemd passes `WATCHDOG_USEC` and
//! kills the service if `WATCHDOG=1` does not come often enough. The
//! watchdog thread here sends it every half period, but only after
//! [`Health::alive`] proved the request path moving (the pool ran a job, the
//! waiting room turned, the accept loop is not stuck), so a wedged server
//! is restarted instead of kept alive by a thread that merely exists.

use crate::ops::health::Health;
use sd_notify::NotifyState;
use slog::{debug, warn, Logger};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Tells systemd the service is ready (bound, audit log open).
pub fn ready() {
    let _ = sd_notify::notify(&[NotifyState::Ready]);
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
}

/// Tells systemd a reload (audit-log reopen) starts; `reloaded` ends it.
pub fn reloading() {
    if let Ok(now) = sd_notify::NotifyState::monotonic_usec_now() {
        let _ = sd_notify::notify(&[NotifyState::Reloading, now]);
    }
}

/// Tells systemd the reload is done.
pub fn reloaded() {
    ready();
}

/// Starts the watchdog thread if systemd asked for one; it ends when the
/// health says the server is stopping.
pub fn spawn_watchdog(health: Arc<Health>, log: &Logger) -> Option<JoinHandle<()>> {
    let period = sd_notify::watchdog_enabled()?;
    let every = (period / 2).max(Duration::from_millis(10));
    let log = log.clone();
    debug!(log, "systemd watchdog on"; "period" => ?period);
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || {
            let mut healthy = true;
            while !health.is_stopping() {
                match health.alive(every) {
                    Ok(()) => {
                        let _ = sd_notify::notify(&[NotifyState::Watchdog]);
                        healthy = true;
                    }
                    Err(reason) => {
                        if healthy {
                            warn!(log, "not alive; withholding the systemd watchdog ping"; "reason" => reason);
                        }
                        healthy = false;
                    }
                }
                // Wait out the period, but notice a stop within 50 ms: a
                // whole period (15 s with WatchdogSec=30) held up every stop.
                let next = Instant::now() + every;
                while !health.is_stopping() && Instant::now() < next {
                    let left = next.saturating_duration_since(Instant::now());
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                }
            }
        })
        .ok()
}
