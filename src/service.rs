//! The prime service: the [`Handler`] that parses lines, decides, audits
//! and replies.
//!
//! Order matters: the audit lines of a turn are written, in one `write`,
//! *before* any of their replies is queued, so a client can never hold a
//! reply the log lacks, even if the process is killed with `kill -9` in
//! between. If the audit write fails the client gets no `T`/`F` for those
//! lines, the connection is closed and the failure is logged and counted.
//!
//! Numbers above 2^128 need the big-number test (up to about a second and a
//! half at 4300 digits). The worker that meets one does not run it: it
//! answers the lines before it, then hands the connection to the heavy lane
//! ([`crate::lane`]) and is free at once. The lane runs the test, audits and
//! replies exactly as a worker would, and the connection carries on.

use crate::audit::AuditLog;
use crate::conn::{Connection, Line};
use crate::escape::escape_bytes;
use crate::metrics::{AuditMetrics, VerdictLabel, VerdictLabels};
use crate::parse::{parse_int, strip, ParsedInt};
use crate::prime::{is_heavy, is_prime};
use crate::protocol::{Answer, Verdict};
use crate::worker::{Flow, Handler};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use slog::{debug, error, Drain, Logger};

/// How many bytes of client input a terminal log record quotes at most.
const LOGGED_INPUT_LIMIT: usize = 64;

/// Options of the prime service beyond the core's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrimeOptions {
    /// `Some(max lines)` to answer many lines per connection; `None` for the
    /// protocol's default of one line, then close.
    pub keep_alive: Option<u64>,
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
    fn counter(&self, verdict: Verdict) -> &Counter {
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

/// A big-number test handed to the heavy lane.
#[derive(Debug)]
pub struct BigTest {
    /// The number.
    n: ParsedInt,
    /// The line as received, for the debug record.
    input: Vec<u8>,
}

/// The handler of the prime protocol.
#[derive(Debug)]
pub struct PrimeService {
    /// Where every answer is recorded before it is sent.
    audit: AuditLog,
    /// One line per connection, or several.
    keep_alive: Option<u64>,
    /// Replies by verdict.
    metrics: PrimeMetrics,
    /// Audit failures are counted here.
    audit_metrics: AuditMetrics,
}

impl PrimeService {
    /// A service recording to `audit`.
    pub fn new(
        audit: AuditLog,
        options: PrimeOptions,
        metrics: PrimeMetrics,
        audit_metrics: AuditMetrics,
    ) -> PrimeService {
        PrimeService {
            audit,
            keep_alive: options.keep_alive,
            metrics,
            audit_metrics,
        }
    }

    /// The audit log, to sync it at shutdown.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Lines a connection may carry.
    fn max_lines(&self) -> u64 {
        self.keep_alive.unwrap_or(1)
    }

    /// Audits a turn's answers in one write, then queues their replies.
    /// Returns `false` (nothing queued) when the audit write failed.
    fn commit(&self, conn: &mut Connection, answers: &[(Answer, Vec<u8>)], log: &Logger) -> bool {
        if answers.is_empty() {
            return true;
        }
        if let Err(e) = self
            .audit
            .record_batch(conn.peer(), answers.iter().map(|(answer, _)| answer))
        {
            self.audit_metrics
                .write_failures
                .inc_by(u64::try_from(answers.len()).unwrap_or(u64::MAX));
            error!(log, "cannot write the audit log; requests left unanswered";
                "peer" => %conn.peer(), "requests" => answers.len(),
                "error" => %e, "path" => %self.audit.path().display());
            return false;
        }
        for (answer, input) in answers {
            self.metrics.counter(answer.verdict).inc();
            conn.queue_reply(answer.verdict.reply());
            if log.is_debug_enabled() {
                debug!(log, "answered";
                    "peer" => %conn.peer(),
                    "code" => %answer.verdict.code(),
                    "micros" => u64::try_from(conn.ready_since().elapsed().as_micros()).unwrap_or(u64::MAX),
                    "input" => escape_bytes(strip(input), LOGGED_INPUT_LIMIT).quoted());
            }
        }
        true
    }

    /// What follows a turn that ended normally.
    fn next<J>(&self, conn: &Connection) -> Flow<J> {
        if conn.lines_taken() >= self.max_lines() || conn.at_eof() {
            Flow::Close
        } else {
            Flow::Continue
        }
    }
}

impl Handler for PrimeService {
    type Heavy = BigTest;

    fn serve(&self, conn: &mut Connection, log: &Logger) -> Flow<BigTest> {
        let mut answers = Vec::new();
        let mut heavy = None;
        while conn.lines_taken() < self.max_lines() {
            let Some(line) = conn.next_line() else { break };
            let answer = match line {
                Line::Complete(input) => match parse_int(&input) {
                    Ok(n) if is_heavy(&n) => {
                        heavy = Some(BigTest { n, input });
                        break;
                    }
                    Ok(n) => (Answer::for_int(&n, is_prime(&n)), input),
                    Err(e) => (Answer::not_integer(strip(&input), &e), input),
                },
                Line::TooLong(prefix) => {
                    let limit = prefix.len().saturating_sub(1);
                    (Answer::too_long(&prefix, limit), prefix)
                }
            };
            answers.push(answer);
        }
        if !self.commit(conn, &answers, log) {
            return Flow::Close;
        }
        match heavy {
            Some(job) => Flow::Heavy(job),
            None => self.next(conn),
        }
    }

    fn serve_heavy(&self, job: BigTest, conn: &mut Connection, log: &Logger) -> Flow<BigTest> {
        let answer = Answer::for_int(&job.n, is_prime(&job.n));
        if !self.commit(conn, &[(answer, job.input)], log) {
            return Flow::Close;
        }
        self.next(conn)
    }
}
