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
//! ([`crate::net::lane`]) and is free at once. The lane runs the test, audits and
//! replies exactly as a worker would, and the connection carries on.

use crate::audit::AuditMetrics;
use crate::audit::{AuditError, AuditLog, SealOptions, SyncPolicy};
use crate::escape::escape_bytes;
use crate::net::Connection;
use crate::net::Line;
use crate::net::ServerOptions;
use crate::net::{Flow, Handler};
use crate::prime::metrics::PrimeMetrics;
use crate::prime::parse::{strip, ParsedInt};
use crate::prime::primality::is_prime;
use crate::prime::verdict::{decide, Answer, Decision, Verdict};
use prometheus_client::registry::Registry;
use slog::{debug, error, info, warn, Drain, Logger, Record, Serializer, KV};
use std::path::PathBuf;

/// How many bytes of client input a terminal log record quotes at most.
const LOGGED_INPUT_LIMIT: usize = 64;

/// Everything the prime server needs besides the listener: its audit log,
/// the core's options and the service's.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The audit log file.
    pub audit_log: PathBuf,
    /// How durable an answered request's audit line is.
    pub audit_sync: SyncPolicy,
    /// `Some` to seal the audit log (forward-secure, see
    /// [`crate::audit::seal`]).
    pub audit_seal: Option<SealOptions>,
    /// The core's options: pool, waiting room, lane, admission, deadlines.
    pub server: ServerOptions,
    /// The prime service's options.
    pub prime: PrimeOptions,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            audit_log: PathBuf::from("logs/prime_server.log"),
            audit_sync: SyncPolicy::None,
            audit_seal: None,
            server: ServerOptions::default(),
            prime: PrimeOptions::default(),
        }
    }
}

/// What the prime service did, as reported at shutdown (beside the
/// core's counts): replies by verdict and requests the audit log failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrimeSummary {
    /// `T` replies.
    pub prime: u64,
    /// `F` replies.
    pub not_prime: u64,
    /// `E` replies.
    pub not_integer: u64,
    /// Requests unanswered because the audit log failed.
    pub audit_failures: u64,
}

impl PrimeSummary {
    /// Replies sent, of every kind.
    pub fn answered(&self) -> u64 {
        self.prime + self.not_prime + self.not_integer
    }
}

impl KV for PrimeSummary {
    fn serialize(&self, _: &Record<'_>, serializer: &mut dyn Serializer) -> slog::Result {
        serializer.emit_u64("prime", self.prime)?;
        serializer.emit_u64("not_prime", self.not_prime)?;
        serializer.emit_u64("not_integer", self.not_integer)?;
        serializer.emit_u64("audit_failures", self.audit_failures)
    }
}

/// Options of the prime service beyond the core's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PrimeOptions {
    /// `Some(max lines)` to answer many lines per connection; `None` for the
    /// protocol's default of one line, then close.
    pub keep_alive: Option<u64>,
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
    /// Opens the audit log `config` names and builds the service, with
    /// fresh metrics.
    ///
    /// # Errors
    ///
    /// The audit log (or its sealing state) cannot be opened; nothing can
    /// be answered without it.
    pub fn open(config: &Config, log: &Logger) -> Result<PrimeService, AuditError> {
        let audit_metrics = AuditMetrics::default();
        let audit = AuditLog::open(
            &config.audit_log,
            config.audit_sync,
            config.audit_seal.as_ref(),
            audit_metrics.clone(),
            log,
        )?;
        info!(log, "audit log open";
            "audit_log" => %config.audit_log.display(),
            "audit_sync" => %config.audit_sync,
            "sealed" => config.audit_seal.is_some(),
            "keep_alive" => config.prime.keep_alive.is_some());
        Ok(PrimeService {
            audit,
            keep_alive: config.prime.keep_alive,
            metrics: PrimeMetrics::default(),
            audit_metrics,
        })
    }

    /// The audit log (to reopen it on SIGHUP).
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// Registers the service's metrics and the audit log's.
    pub fn register(&self, registry: &mut Registry) {
        self.metrics.register(registry);
        self.audit_metrics.register(registry);
    }

    /// What the service did so far, read from its metrics.
    pub fn summary(&self) -> PrimeSummary {
        PrimeSummary {
            prime: self.metrics.count(Verdict::Prime),
            not_prime: self.metrics.count(Verdict::NotPrime),
            not_integer: self.metrics.count(Verdict::NotInteger),
            audit_failures: self.audit_metrics.write_failures.get(),
        }
    }

    /// Syncs and closes the audit log once every answer has been given.
    pub fn finish(&self, log: &Logger) {
        if let Err(e) = self.audit.sync() {
            warn!(log, "cannot sync the audit log"; "error" => %e);
        }
        self.audit.close();
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
                Line::Complete(input) => match decide(&input) {
                    Decision::Heavy(n) => {
                        heavy = Some(BigTest { n, input });
                        break;
                    }
                    Decision::Answer(answer) => (answer, input),
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
