//! **audit**: the audit trail. The audit log (whole lines only, a sync
//! policy with group commit, reopen on SIGHUP, fail-closed on a full
//! disk), and its forward-secure seals ([`seal`]) with their verification.
//!
//! It knows bytes and files, never sockets nor primes: it imports nothing
//! from [`crate::net`], [`crate::prime`] or [`crate::ops`]. What it
//! records is any [`Entry`] (a code letter and a phrase); the prime
//! service's answers are entries.
//!
//! | module | job |
//! | --- | --- |
//! | `log` | the audit file: [`AuditLog`], [`SyncPolicy`], the line format |
//! | [`seal`] | seals over the audit log, and `prime-audit verify` |
//! | `metrics` | what the audit trail counts |

mod log;
mod metrics;
pub mod seal;

pub use log::{
    format_line, format_lines, AppendError, AuditError, AuditLog, Entry, SealOptions, SyncPolicy,
};
pub use metrics::AuditMetrics;
