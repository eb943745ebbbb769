//! The load generator: requests sent round-robin until a count or a
//! duration is reached, every reply checked, latency recorded in an HDR
//! histogram. Connection-per-request load comes from one event-driven
//! thread ([`crate::evented`], the default) or from one blocking thread per
//! connection using the library's own client ([`prime_server::client::ask`]);
//! pipelined load from one thread per keep-alive connection.

pub use crate::run::{record, Claims, Generator, LoadResult, LoadSpec, Mode, Stop};
use crate::workload::Request;
use prime_server::client::{ask, parse_reply};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

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

/// The event-driven generator, run the way the bench runs it (through
/// [`run`], which picks it by the spec).
#[cfg(test)]
mod evented_tests {
    use super::*;
    use prime_server::prime::Verdict;
    use std::net::TcpListener;

    fn spec(addr: std::net::SocketAddr, stop: Stop, timeout: Duration) -> LoadSpec {
        LoadSpec {
            addr,
            concurrency: 2,
            mode: Mode::PerConnection,
            generator: Generator::Evented,
            stop,
            timeout,
            check_replies: true,
            half_close: false,
            abandon_at_stop: false,
        }
    }

    fn seventeen() -> Vec<Request> {
        vec![Request {
            line: "17".to_owned(),
            expected: Verdict::Prime,
        }]
    }

    #[test]
    fn a_server_that_never_replies_costs_errors_not_a_hang() {
        // The kernel completes the handshakes into the backlog; nobody
        // accepts, so no reply ever comes.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let started = Instant::now();
        let result = run(
            &spec(addr, Stop::Count(3), Duration::from_millis(200)),
            &seventeen(),
        );
        assert_eq!((result.requests, result.errors), (0, 3));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn replies_are_read_to_eof_and_checked() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Answers four connections: T, F, a reply outside the protocol,
        // then T again.
        let server = std::thread::spawn(move || {
            for reply in [&b"T\n"[..], b"F\n", b"T\nT\n", b"T\n"] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut line = [0u8; 3];
                stream.read_exact(&mut line).unwrap();
                assert_eq!(&line, b"17\n");
                stream.write_all(reply).unwrap();
            }
        });
        let mut one_at_a_time = spec(addr, Stop::Count(4), Duration::from_secs(20));
        one_at_a_time.concurrency = 1;
        let result = run(&one_at_a_time, &seventeen());
        server.join().unwrap();
        assert_eq!(
            (result.requests, result.wrong, result.errors),
            (2 + 1, 1, 1),
            "T and T counted, F wrong, the double reply an error"
        );
        // The last answer came before the run ended.
        assert!(result.answering > Duration::ZERO && result.answering <= result.elapsed);
        let pace = result.answer_pace();
        assert!(pace >= result.rate(), "{pace} < {}", result.rate());
    }

    #[test]
    fn half_closing_clients_are_answered_by_a_server_that_reads_to_eof() {
        // Like a keep-alive server: it answers once the client has said
        // it has nothing more (EOF), then closes.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for _ in 0..3 {
                let (mut stream, _) = listener.accept().unwrap();
                let mut line = Vec::new();
                stream.read_to_end(&mut line).unwrap();
                assert_eq!(line, b"17\n");
                stream.write_all(b"T\n").unwrap();
            }
        });
        let mut half_closing = spec(addr, Stop::Count(3), Duration::from_secs(5));
        half_closing.concurrency = 1;
        half_closing.half_close = true;
        let result = run(&half_closing, &seventeen());
        server.join().unwrap();
        assert_eq!((result.requests, result.errors, result.wrong), (3, 0, 0));
    }

    #[test]
    fn requests_in_flight_at_the_end_are_abandoned_not_awaited() {
        // Nobody accepts: every request stays in flight until abandoned.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap();
        let mut abandoning = spec(
            addr,
            Stop::Duration(Duration::from_millis(200)),
            Duration::from_secs(20),
        );
        abandoning.abandon_at_stop = true;
        let started = Instant::now();
        let result = run(&abandoning, &seventeen());
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "it waited for the timeout"
        );
        assert_eq!(
            (result.requests, result.errors, result.abandoned),
            (0, 0, 2),
            "both slots abandoned"
        );
        assert_eq!(result.sent(), 0);
        assert_eq!(
            (result.answering, result.answer_pace()),
            (Duration::ZERO, 0.0)
        );
    }
}
