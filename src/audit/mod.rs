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
//! | `log` | the audit file: [`AuditLog`], whole lines, group commit, reopen, the sync and seal threads |
//! | `line` | the audit line's format and the [`Entry`] it records |
//! | `policy` | [`SyncPolicy`]: how durable a line is before its reply |
//! | [`seal`] | seals over the audit log, and `prime-audit verify` |
//! | `metrics` | what the audit trail counts |

mod line;
mod log;
mod metrics;
mod policy;
pub mod seal;

pub use line::{format_line, format_lines, Entry};
pub use log::{AppendError, AuditError, AuditLog, SealOptions};
pub use metrics::AuditMetrics;
pub use policy::SyncPolicy;
