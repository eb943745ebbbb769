//! What the prime service counts: replies by verdict
//! (`requests_total{verdict}`), the only label the server's metrics carry
//! besides the build version, and one of three fixed values.

use crate::prime::verdict::Verdict;
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use std::fmt::Write as _;

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

/// The replies the service sent, by verdict: `requests_total{verdict}`.
#[derive(Debug, Clone)]
pub struct PrimeMetrics {
    /// The family registered as `requests_total`.
    family: Family<VerdictLabels, Counter>,
    /// `T`, `F` and `E`, in [`Verdict::ALL`] order, taken from the family
    /// once so counting needs no lock.
    by_verdict: [Counter; 3],
}

impl Default for PrimeMetrics {
    fn default() -> Self {
        let family = Family::<VerdictLabels, Counter>::default();
        let counter = |verdict| family.get_or_create(&VerdictLabels { verdict }).clone();
        let by_verdict = [
            counter(VerdictLabel::Prime),
            counter(VerdictLabel::NotPrime),
            counter(VerdictLabel::NotInteger),
        ];
        PrimeMetrics { family, by_verdict }
    }
}

impl PrimeMetrics {
    /// Registers `requests_total{verdict}`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "requests",
            "Requests answered, by verdict",
            self.family.clone(),
        );
    }

    /// The counter of `verdict`.
    pub(crate) fn counter(&self, verdict: Verdict) -> &Counter {
        match verdict {
            Verdict::Prime => &self.by_verdict[0],
            Verdict::NotPrime => &self.by_verdict[1],
            Verdict::NotInteger => &self.by_verdict[2],
        }
    }

    /// How many replies of `verdict` were sent.
    pub fn count(&self, verdict: Verdict) -> u64 {
        self.counter(verdict).get()
    }
}
