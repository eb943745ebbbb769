//! The prime service: the [`Handler`] that reads a line, decides, audits,
//! replies.
//!
//! Order matters: the audit line is written *before* the reply is queued, so
//! a client can never hold a reply the log lacks, even if the process is
//! killed with `kill -9` in between. If the audit write fails the client gets
//! no `T`/`F` at all and the failure is logged.
//!
//! Big integers (above 2^64) cost up to about a second each at 4300 digits,
//! so at most `big_tests` of them run at once; other workers stay free for
//! cheap requests.

use crate::audit::AuditLog;
use crate::conn::{Connection, Line, ReadError};
use crate::escape::escape_bytes;
use crate::parse::strip;
use crate::prime::{is_heavy, is_prime};
use crate::protocol::{Answer, Verdict};
use crate::server::Handler;
use crate::sync::Semaphore;
use slog::{debug, error, warn, Drain, Logger};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How many bytes of client input a terminal log record quotes at most.
const LOGGED_INPUT_LIMIT: usize = 64;

/// Options of the prime service beyond the core's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimeOptions {
    /// Big-number tests allowed to run at once.
    pub big_tests: usize,
    /// `Some(max lines)` to answer many lines per connection; `None` for the
    /// protocol's default of one line, then close.
    pub keep_alive: Option<u64>,
}

impl Default for PrimeOptions {
    fn default() -> Self {
        PrimeOptions {
            big_tests: std::thread::available_parallelism().map_or(1, usize::from),
            keep_alive: None,
        }
    }
}

/// Counts of what the service did, for the shutdown summary.
#[derive(Debug, Default)]
pub struct PrimeStats {
    /// `T` replies.
    pub prime: AtomicU64,
    /// `F` replies.
    pub not_prime: AtomicU64,
    /// `E` replies.
    pub not_integer: AtomicU64,
    /// Connections closed because the client was too slow.
    pub timeouts: AtomicU64,
    /// Requests left unanswered because the audit line could not be written.
    pub audit_failures: AtomicU64,
}

impl PrimeStats {
    /// The counter for `verdict`.
    fn counter(&self, verdict: Verdict) -> &AtomicU64 {
        match verdict {
            Verdict::Prime => &self.prime,
            Verdict::NotPrime => &self.not_prime,
            Verdict::NotInteger => &self.not_integer,
        }
    }

    /// How many replies of `verdict` were sent.
    pub fn count(&self, verdict: Verdict) -> u64 {
        self.counter(verdict).load(Ordering::Relaxed)
    }
}

/// The handler of the prime protocol.
#[derive(Debug)]
pub struct PrimeService {
    /// Where every answer is recorded before it is sent.
    audit: AuditLog,
    /// Rations big-number tests.
    big_tests: Arc<Semaphore>,
    /// One line per connection, or several.
    keep_alive: Option<u64>,
    /// Counters for the summary.
    stats: PrimeStats,
}

impl PrimeService {
    /// A service recording to `audit`.
    pub fn new(audit: AuditLog, options: PrimeOptions) -> PrimeService {
        PrimeService {
            audit,
            big_tests: Semaphore::new(options.big_tests.max(1)),
            keep_alive: options.keep_alive,
            stats: PrimeStats::default(),
        }
    }

    /// The audit log, to sync it at shutdown.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// What the service has counted so far.
    pub fn stats(&self) -> &PrimeStats {
        &self.stats
    }

    /// Answers one line, rationing big-number tests.
    fn answer(&self, line: &[u8]) -> Answer {
        Answer::for_line(line, |n| {
            if is_heavy(n) {
                let _permit = self.big_tests.acquire();
                is_prime(n)
            } else {
                is_prime(n)
            }
        })
    }
}

impl Handler for PrimeService {
    fn handle(&self, mut conn: Connection, log: &Logger) {
        let max_lines = self.keep_alive.unwrap_or(1);
        let mut answered = 0;
        while answered < max_lines {
            let started = Instant::now();
            let (answer, input) = match conn.read_line() {
                Ok(Line::Complete(line)) => (self.answer(&line), line),
                Ok(Line::TooLong(prefix)) => {
                    let limit = prefix.len().saturating_sub(1);
                    (Answer::too_long(&prefix, limit), prefix)
                }
                Ok(Line::Closed) => break,
                Err(ReadError::Idle(after)) => {
                    debug!(log, "keep-alive connection idle; closing"; "after" => ?after);
                    break;
                }
                Err(e @ ReadError::Deadline(_)) => {
                    self.stats.timeouts.fetch_add(1, Ordering::Relaxed);
                    warn!(log, "request timed out; closing without a reply"; "error" => %e);
                    break;
                }
                Err(ReadError::Io(e)) => {
                    debug!(log, "connection failed while reading"; "error" => %e);
                    break;
                }
            };
            if let Err(e) = self.audit.record(conn.peer(), &answer) {
                self.stats.audit_failures.fetch_add(1, Ordering::Relaxed);
                error!(log, "cannot write the audit log; request left unanswered";
                    "error" => %e, "path" => %self.audit.path().display());
                break;
            }
            self.stats
                .counter(answer.verdict)
                .fetch_add(1, Ordering::Relaxed);
            conn.queue_reply(answer.verdict.reply());
            answered += 1;
            if log.is_debug_enabled() {
                debug!(log, "answered";
                    "code" => %answer.verdict.code(),
                    "micros" => micros(started.elapsed()),
                    "input" => escape_bytes(strip(&input), LOGGED_INPUT_LIMIT).quoted());
            }
            if conn.at_eof() {
                break;
            }
        }
        if let Err(e) = conn.close() {
            warn!(log, "could not send the reply"; "error" => %e);
        }
    }
}

/// A duration in whole microseconds, for log records.
fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
