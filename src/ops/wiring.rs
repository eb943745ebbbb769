//! What each service adds to the application ([`Service`]): its name, its
//! metrics, its readiness, what SIGHUP reopens, and its summary. The
//! services themselves know nothing of the application; this is where they
//! are wired in.

use crate::echo::{EchoService, EchoSummary};
use crate::ops::app::Service;
use crate::ops::signals::Reload;
use crate::prime::{PrimeService, PrimeSummary};
use prometheus_client::registry::Registry;
use slog::Logger;
use std::sync::Arc;

impl Service for PrimeService {
    const NAME: &'static str = "prime-server";
    type Summary = PrimeSummary;

    fn register(&self, registry: &mut Registry) {
        PrimeService::register(self, registry);
    }

    fn unready(&self) -> Option<String> {
        self.audit().problem()
    }

    fn reloader(self: &Arc<Self>) -> Option<Reload> {
        let service = Arc::clone(self);
        Some(Box::new(move || {
            service.audit().reopen().map_err(|e| {
                anyhow::anyhow!("cannot reopen {}: {e}", service.audit().path().display())
            })
        }))
    }

    fn finish(&self, log: &Logger) {
        PrimeService::finish(self, log);
    }

    fn summary(&self) -> PrimeSummary {
        PrimeService::summary(self)
    }
}

impl Service for EchoService {
    const NAME: &'static str = "echo-server";
    type Summary = EchoSummary;

    fn register(&self, registry: &mut Registry) {
        EchoService::register(self, registry);
    }

    fn summary(&self) -> EchoSummary {
        EchoService::summary(self)
    }
}
