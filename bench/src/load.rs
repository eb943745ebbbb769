//! The load generator: requests sent round-robin until a count or a
//! duration is reached, every reply checked, latency recorded in an HDR
//! histogram. Connection-per-request load comes from one event-driven
//! thread ([`crate::evented`], the default) or from one blocking thread per
//! connection using the library's own client ([`prime_server::client::ask`]);
//! pipelined load from one thread per keep-alive connection.

use crate::workload::Request;
use hdrhistogram::Histogram;
use prime_server::client::{ask, parse_reply};
use prime_server::prime::Verdict;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
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
    last_answer: Option<Instant>,
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
    fn new(stop: Stop, started: Instant) -> Claims {
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

/// Runs one load against `spec.addr`.
pub fn run(spec: &LoadSpec, requests: &[Request]) -> LoadResult {
    let cpu_before = process_cpu();
    let started = Instant::now();
    let claims = Claims::new(spec.stop, started);
    let mut total = LoadResult::empty();
    if spec.mode == Mode::PerConnection && spec.generator == Generator::Evented {
        total.merge(&crate::evented::run(spec, requests, &claims));
    } else {
        let parts: Vec<LoadResult> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..spec.concurrency.max(1))
                .map(|_| {
                    let claims = &claims;
                    scope.spawn(move || {
                        let mut part = LoadResult::empty();
                        match spec.mode {
                            Mode::PerConnection => {
                                while let Some(i) = claims.claim(1) {
                                    let request = &requests[(i % requests.len() as u64) as usize];
                                    one_request(spec, request, &mut part);
                                }
                            }
                            Mode::Pipelined { depth } => {
                                pipelined(spec, requests, depth, claims, &mut part)
                            }
                        }
                        part
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|_| LoadResult::empty()))
                .collect()
        });
        for part in &parts {
            total.merge(part);
        }
    }
    total.elapsed = started.elapsed();
    total.answering = total.last_answer.map_or(Duration::ZERO, |last| {
        last.saturating_duration_since(started)
    });
    total.generator_cpu = process_cpu().saturating_sub(cpu_before);
    total
}

/// One request on its own connection, the seed client's way.
fn one_request(spec: &LoadSpec, request: &Request, part: &mut LoadResult) {
    let started = Instant::now();
    let verdict = ask(spec.addr, request.line.as_bytes(), spec.timeout)
        .ok()
        .map(|exchange| exchange.verdict);
    record(spec, request, verdict, started.elapsed(), part);
}

/// Pipelined lines on one long-lived connection, `depth` at a time.
fn pipelined(
    spec: &LoadSpec,
    requests: &[Request],
    depth: usize,
    claims: &Claims,
    part: &mut LoadResult,
) {
    let depth = depth.max(1);
    let connect = || -> std::io::Result<(TcpStream, BufReader<TcpStream>)> {
        let stream = TcpStream::connect_timeout(&spec.addr, spec.timeout)?;
        stream.set_read_timeout(Some(spec.timeout))?;
        stream.set_write_timeout(Some(spec.timeout))?;
        stream.set_nodelay(true)?;
        let reader = BufReader::new(stream.try_clone()?);
        Ok((stream, reader))
    };
    let Ok((mut stream, mut reader)) = connect() else {
        part.errors += 1;
        return;
    };
    let mut batch = Vec::new();
    let mut reply = Vec::with_capacity(2);
    while let Some(first) = claims.claim(depth as u64) {
        batch.clear();
        let picked: Vec<&Request> = (first..first + depth as u64)
            .map(|i| &requests[(i % requests.len() as u64) as usize])
            .collect();
        for r in &picked {
            batch.extend_from_slice(r.line.as_bytes());
            batch.push(b'\n');
        }
        let started = Instant::now();
        if stream.write_all(&batch).is_err() {
            part.errors += picked.len() as u64;
            return;
        }
        for r in &picked {
            reply.clear();
            let ok = (&mut reader).take(2).read_until(b'\n', &mut reply).is_ok();
            let verdict = if ok { parse_reply(&reply).ok() } else { None };
            record(spec, r, verdict, started.elapsed(), part);
        }
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

/// CPU time (user + system) this process has used, all threads.
pub fn process_cpu() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we pass; RUSAGE_SELF is valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return Duration::ZERO;
    }
    // SAFETY: getrusage succeeded, so the struct is initialised.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}
