//! What one load run is and what it measured, shared by the generators
//! (the event-driven one in [`crate::evented`], the threaded ones in
//! [`crate::load`]): the spec, the result with its latency histogram, the
//! claims that hand out request numbers, and how one answer is recorded.

use crate::workload::Request;
use hdrhistogram::Histogram;
use prime_server::prime::Verdict;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Longest latency the histogram records exactly (60 s, in microseconds).
const MAX_MICROS: u64 = 60_000_000;

/// When a run stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// After this many requests in all.
    Count(u64),
    /// After this long.
    Duration(Duration),
}

/// How requests travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One connection per request: the protocol's normal mode.
    PerConnection,
    /// One connection per thread, `depth` lines written before reading
    /// their replies (the server needs keep-alive).
    Pipelined {
        /// Lines in flight per connection.
        depth: usize,
    },
}

/// What drives connection-per-request load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Generator {
    /// One thread with non-blocking sockets on epoll: a few microseconds of
    /// CPU per request and no context switches of its own, so the server
    /// keeps the machine.
    Evented,
    /// One blocking thread per connection (the library's client): about
    /// twice the CPU per request and a context switch or more per request
    /// of its own, which changes how the server is scheduled.
    Threads,
}

impl Generator {
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Generator::Evented => "event-driven generator",
            Generator::Threads => "thread-per-connection generator",
        }
    }
}

/// One run's settings.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The server.
    pub addr: SocketAddr,
    /// Client threads, each with one connection at a time.
    pub concurrency: usize,
    /// Connection per request or pipelined.
    pub mode: Mode,
    /// Which client drives connection-per-request load (pipelined load
    /// always uses one thread per connection).
    pub generator: Generator,
    /// When to stop.
    pub stop: Stop,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Whether to check replies (the floor answers a constant).
    pub check_replies: bool,
    /// Half-close each connection once its line is sent (event-driven
    /// generator): a `--keep-alive` server answers every line until EOF,
    /// so a connection-per-request client must say it has no more.
    pub half_close: bool,
    /// At the end of a duration run, drop the requests still in flight
    /// (counted in [`LoadResult::abandoned`]) instead of waiting for them
    /// (event-driven generator): a loop of big numbers queued behind each
    /// other would otherwise keep the run going for the whole queue.
    pub abandon_at_stop: bool,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct LoadResult {
    /// Requests answered.
    pub requests: u64,
    /// Requests that failed (connect, I/O, timeout, bad reply).
    pub errors: u64,
    /// Replies that were valid but not the expected verdict.
    pub wrong: u64,
    /// Requests in flight when the run stopped and dropped unanswered
    /// (only with [`LoadSpec::abandon_at_stop`]); neither answered nor
    /// errors.
    pub abandoned: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Time from the start of the run to its last answer (summed over
    /// merged runs): with requests that take seconds each, the pace of the
    /// answers without the ones a stop cut off.
    pub answering: Duration,
    /// When the last answer of this run came (within one run only: it is
    /// turned into [`LoadResult::answering`] at the end of the run).
    pub(crate) last_answer: Option<Instant>,
    /// Latency of answered requests, in microseconds.
    pub latency: Histogram<u64>,
    /// CPU time the generator itself used (all its threads).
    pub generator_cpu: Duration,
}

impl LoadResult {
    /// An empty result, to merge rounds into.
    pub fn empty() -> LoadResult {
        LoadResult {
            requests: 0,
            errors: 0,
            wrong: 0,
            abandoned: 0,
            elapsed: Duration::ZERO,
            answering: Duration::ZERO,
            last_answer: None,
            latency: new_histogram(),
            generator_cpu: Duration::ZERO,
        }
    }

    /// Adds another round.
    pub fn merge(&mut self, other: &LoadResult) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.wrong += other.wrong;
        self.abandoned += other.abandoned;
        self.elapsed += other.elapsed;
        self.answering += other.answering;
        self.last_answer = self.last_answer.max(other.last_answer);
        self.generator_cpu += other.generator_cpu;
        // Both histograms share bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }

    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Answers per second up to the last answer (see
    /// [`LoadResult::answering`]); 0 without answers.
    pub fn answer_pace(&self) -> f64 {
        if self.answering.is_zero() {
            return 0.0;
        }
        self.requests as f64 / self.answering.as_secs_f64()
    }

    /// A latency percentile, in microseconds.
    pub fn percentile(&self, p: f64) -> u64 {
        self.latency.value_at_quantile(p / 100.0)
    }

    /// Requests sent and finished one way or the other: answered plus
    /// failed (abandoned ones are left out: the run cut them short).
    pub fn sent(&self) -> u64 {
        self.requests + self.errors
    }
}

fn new_histogram() -> Histogram<u64> {
    // 3 significant figures from 1 us to a minute: a few hundred KiB.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant bounds are valid")
}

/// Hands out request numbers until the run's count or deadline is reached;
/// shared by every client thread of a run.
pub struct Claims {
    /// The next request number.
    next: AtomicU64,
    /// No claims at or after this instant (a duration run).
    deadline: Option<Instant>,
    /// No request numbers at or beyond this (a count run).
    limit: u64,
}

impl Claims {
    /// Claims for a run starting at `started`.
    pub fn new(stop: Stop, started: Instant) -> Claims {
        let (deadline, limit) = match stop {
            Stop::Duration(d) => (Some(started + d), u64::MAX),
            Stop::Count(n) => (None, n),
        };
        Claims {
            next: AtomicU64::new(0),
            deadline,
            limit,
        }
    }

    /// The first of `batch` consecutive request numbers, or `None` when the
    /// run is over.
    pub fn claim(&self, batch: u64) -> Option<u64> {
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            return None;
        }
        let first = self.next.fetch_add(batch, Ordering::Relaxed);
        (first < self.limit).then_some(first)
    }

    /// Whether a duration run's deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }
}

/// Records one request: its latency when a valid reply came (`None` for a
/// failed connection or a reply outside the protocol, counted as an error),
/// and whether the reply was the expected one.
pub fn record(
    spec: &LoadSpec,
    request: &Request,
    verdict: Option<Verdict>,
    took: Duration,
    part: &mut LoadResult,
) {
    let Some(verdict) = verdict else {
        part.errors += 1;
        return;
    };
    part.requests += 1;
    part.last_answer = Some(Instant::now());
    if spec.check_replies && verdict != request.expected {
        part.wrong += 1;
    }
    let micros = u64::try_from(took.as_micros())
        .unwrap_or(MAX_MICROS)
        .clamp(1, MAX_MICROS);
    let _ = part.latency.record(micros);
}
