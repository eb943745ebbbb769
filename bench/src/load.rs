//! The load generator: C threads, each with its own connection(s), sending
//! requests round-robin until a count or a duration is reached, checking
//! every reply and recording latency in an HDR histogram.

use crate::workload::Request;
use hdrhistogram::Histogram;
use prime_server::client::parse_reply;
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

/// One run's settings.
#[derive(Debug, Clone)]
pub struct LoadSpec {
    /// The server.
    pub addr: SocketAddr,
    /// Client threads, each with one connection at a time.
    pub concurrency: usize,
    /// Connection per request or pipelined.
    pub mode: Mode,
    /// When to stop.
    pub stop: Stop,
    /// Per-request timeout.
    pub timeout: Duration,
    /// Whether to check replies (the floor answers a constant).
    pub check_replies: bool,
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
    /// Wall time of the run.
    pub elapsed: Duration,
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
            elapsed: Duration::ZERO,
            latency: new_histogram(),
            generator_cpu: Duration::ZERO,
        }
    }

    /// Adds another round.
    pub fn merge(&mut self, other: &LoadResult) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.wrong += other.wrong;
        self.elapsed += other.elapsed;
        self.generator_cpu += other.generator_cpu;
        // Both histograms share bounds, so adding cannot fail.
        let _ = self.latency.add(&other.latency);
    }

    /// Requests per second.
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// A latency percentile, in microseconds.
    pub fn percentile(&self, p: f64) -> u64 {
        self.latency.value_at_quantile(p / 100.0)
    }
}

fn new_histogram() -> Histogram<u64> {
    // 3 significant figures from 1 us to a minute: a few hundred KiB.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("constant bounds are valid")
}

/// Runs one load against `spec.addr`.
pub fn run(spec: &LoadSpec, requests: &[Request]) -> LoadResult {
    let next = AtomicU64::new(0);
    let cpu_before = process_cpu();
    let started = Instant::now();
    let deadline = match spec.stop {
        Stop::Duration(d) => Some(started + d),
        Stop::Count(_) => None,
    };
    let limit = match spec.stop {
        Stop::Count(n) => n,
        Stop::Duration(_) => u64::MAX,
    };
    let parts: Vec<LoadResult> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..spec.concurrency.max(1))
            .map(|_| {
                let next = &next;
                scope.spawn(move || {
                    let mut part = LoadResult::empty();
                    let claim = |batch: u64| -> Option<u64> {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            return None;
                        }
                        let first = next.fetch_add(batch, Ordering::Relaxed);
                        (first < limit).then_some(first)
                    };
                    match spec.mode {
                        Mode::PerConnection => {
                            while let Some(i) = claim(1) {
                                let request = &requests[(i % requests.len() as u64) as usize];
                                one_request(spec, request, &mut part);
                            }
                        }
                        Mode::Pipelined { depth } => {
                            pipelined(spec, requests, depth, claim, &mut part)
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
    let mut total = LoadResult::empty();
    for part in &parts {
        total.merge(part);
    }
    total.elapsed = started.elapsed();
    total.generator_cpu = process_cpu().saturating_sub(cpu_before);
    total
}

/// One request on its own connection.
fn one_request(spec: &LoadSpec, request: &Request, part: &mut LoadResult) {
    let started = Instant::now();
    let outcome = (|| -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&spec.addr, spec.timeout)?;
        stream.set_read_timeout(Some(spec.timeout))?;
        stream.set_write_timeout(Some(spec.timeout))?;
        let mut line = Vec::with_capacity(request.line.len() + 1);
        line.extend_from_slice(request.line.as_bytes());
        line.push(b'\n');
        stream.write_all(&line)?;
        let mut reply = Vec::with_capacity(2);
        (&mut stream).take(3).read_to_end(&mut reply)?;
        Ok(reply)
    })();
    record(
        spec,
        request,
        outcome.ok().as_deref(),
        started.elapsed(),
        part,
    );
}

/// Pipelined lines on one long-lived connection, `depth` at a time.
fn pipelined(
    spec: &LoadSpec,
    requests: &[Request],
    depth: usize,
    claim: impl Fn(u64) -> Option<u64>,
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
    while let Some(first) = claim(depth as u64) {
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
            record(
                spec,
                r,
                ok.then_some(reply.as_slice()),
                started.elapsed(),
                part,
            );
        }
    }
}

/// Checks one reply and records its latency.
fn record(
    spec: &LoadSpec,
    request: &Request,
    reply: Option<&[u8]>,
    took: Duration,
    part: &mut LoadResult,
) {
    let Some(reply) = reply else {
        part.errors += 1;
        return;
    };
    match parse_reply(reply) {
        Ok(verdict) => {
            part.requests += 1;
            if spec.check_replies && verdict != request.expected {
                part.wrong += 1;
            }
            let micros = u64::try_from(took.as_micros())
                .unwrap_or(MAX_MICROS)
                .clamp(1, MAX_MICROS);
            let _ = part.latency.record(micros);
        }
        Err(_) => part.errors += 1,
    }
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
