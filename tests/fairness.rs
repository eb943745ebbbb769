//! No client can starve the others or hold up a stop: the heavy lane,
//! fair turns for pipelining clients, the per-address rate limit, a
//! stalled stderr, and a stop that is prompt as well as graceful. See
//! docs/operations.md#limits-and-failure-behaviour: big numbers, greedy
//! clients, rate limit, stopping, terminal log. Loopback only; every wait is
//! bounded.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use test_support::{
    audit::{audited_answers, read_lines},
    io::{ask, connect, connect_sending, reply_for, wait_until, IO_TIMEOUT},
    process::ServerProcess,
    server::TestServer,
};

/// 2^11213 - 1, a Mersenne prime of 3376 digits: a heavy test (about half
/// a second) well inside the 4300-digit limit.
fn heavy_prime() -> String {
    let n = (rug::Integer::from(1) << 11213u32) - 1u32;
    n.to_string()
}

#[test]
fn heavy_numbers_wait_in_the_lane_not_on_workers() {
    // One worker, one lane thread, two heavy requests: the light requests
    // are answered while the heavy ones are still running and queued.
    let server = TestServer::start_with(|c| {
        c.server.workers = 1;
        c.server.heavy_threads = 1;
    });
    let heavy = heavy_prime();
    let heavy_done = AtomicUsize::new(0);
    let core = &server.metrics;
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                assert_eq!(ask(server.addr, &heavy), "T\n");
                heavy_done.fetch_add(1, Ordering::SeqCst);
            });
        }
        assert!(
            wait_until(IO_TIMEOUT, || core.heavy_running.get() == 1
                && core.heavy_queued.get() == 1),
            "the heavy requests should all be in the lane"
        );
        for n in 0..50u64 {
            assert_eq!(ask(server.addr, &n.to_string()), reply_for(n));
        }
        assert_eq!(
            heavy_done.load(Ordering::SeqCst),
            0,
            "the light requests should not have waited for a heavy one"
        );
        assert!(core.heavy_running.get() + core.heavy_queued.get() > 0);
    });
    assert_eq!(heavy_done.load(Ordering::SeqCst), 2);
}

#[test]
fn the_lane_takes_client_addresses_in_turn() {
    let server = TestServer::start_with(|c| {
        c.server.heavy_threads = 1;
    });
    let heavy = heavy_prime();
    let from = |last: u8| {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket
            .bind(&std::net::SocketAddr::from(([127, 0, 3, last], 0)).into())
            .unwrap();
        socket.connect(&server.addr.into()).unwrap();
        let stream: TcpStream = socket.into();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        stream
    };
    // Address A queues four heavy requests, then address B one.
    let mut a: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = from(1);
            s.write_all(format!("{heavy}\n").as_bytes()).unwrap();
            s
        })
        .collect();
    let core = &server.metrics;
    assert!(wait_until(IO_TIMEOUT, || core.heavy_running.get()
        + core.heavy_queued.get()
        == 4));
    let mut b = from(2);
    b.write_all(format!("{heavy}\n").as_bytes()).unwrap();
    let mut reply = Vec::new();
    b.read_to_end(&mut reply).unwrap();
    assert_eq!(reply, b"T\n");
    // First in first out, B would wait for all four of A's. Taking turns by
    // address (and a newly arrived address first), B waits at most for
    // the one running when it arrived and, if that ended before B was
    // queued, the next.
    let lines = server.audit_lines();
    let b_at = lines
        .iter()
        .position(|l| l.split(' ').nth(1).unwrap().starts_with("127.0.3.2:"))
        .expect("B's line");
    assert!(b_at <= 2, "B's answer came after {b_at} of A's: {lines:?}");
    assert!(core.heavy_running.get() + core.heavy_queued.get() >= 1);
    for s in &mut a {
        let mut reply = Vec::new();
        s.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, b"T\n");
    }
}

/// Ends a flood when dropped, even if the test panics first, so scoped
/// flooding threads never outlive a failed assertion.
struct EndFlood<'a> {
    /// Tells the writer to stop.
    stop: &'a AtomicBool,
    /// The flooding connection, shut down both ways.
    stream: &'a TcpStream,
}

impl Drop for EndFlood<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}

#[test]
fn a_greedy_pipelining_client_gets_turns_not_the_worker() {
    let server = TestServer::start_with(|c| {
        c.server.workers = 1;
        c.prime.keep_alive = Some(u64::MAX);
    });
    let stop = AtomicBool::new(false);
    let greedy = connect(server.addr);
    std::thread::scope(|scope| {
        let mut writer = greedy.try_clone().unwrap();
        let mut replies = greedy.try_clone().unwrap();
        let stop = &stop;
        let _end = EndFlood {
            stop,
            stream: &greedy,
        };
        scope.spawn(move || {
            let batch = "17\n".repeat(1000);
            while !stop.load(Ordering::SeqCst) && writer.write_all(batch.as_bytes()).is_ok() {}
        });
        scope.spawn(move || {
            // Keep reading so the flood never stalls on its own replies.
            let mut sink = [0u8; 64 * 1024];
            while !stop.load(Ordering::SeqCst) && matches!(replies.read(&mut sink), Ok(n) if n > 0)
            {
            }
        });
        let answered = || server.service.summary().prime;
        assert!(wait_until(IO_TIMEOUT, || answered() > 10_000));
        // The flood goes on; a second keep-alive client is served in turn.
        let mut polite = connect(server.addr);
        let mut polite_replies = BufReader::new(polite.try_clone().unwrap());
        for (line, expected) in [("4", "F\n"), ("5", "T\n"), ("4j", "E\n")] {
            polite.write_all(format!("{line}\n").as_bytes()).unwrap();
            let mut reply = String::new();
            polite_replies.read_line(&mut reply).unwrap();
            assert_eq!(reply, expected);
        }
        // ...and the flood was not cut to make room: it is still answered.
        let after = answered();
        assert!(
            wait_until(IO_TIMEOUT, || answered() > after + 1_000),
            "the flood stopped being answered"
        );
    });
}

#[test]
fn the_rate_limit_slows_a_flood_without_losing_or_changing_answers() {
    let server = TestServer::start_with(|c| {
        c.prime.keep_alive = Some(u64::MAX);
        c.server.max_rate_per_ip = Some("100/s".parse().unwrap());
    });
    let mut stream = connect(server.addr);
    let started = Instant::now();
    let request: String = (0..300).map(|n| format!("{n}\n")).collect();
    stream.write_all(request.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut replies = String::new();
    stream.read_to_string(&mut replies).unwrap();
    let elapsed = started.elapsed();
    let expected: String = (0..300u64).map(reply_for).collect();
    assert_eq!(
        replies, expected,
        "every line answered, in order, correctly"
    );
    // A full bucket (100) goes at once; the other 200 at 100/s.
    assert!(
        elapsed >= Duration::from_millis(1_800),
        "not slowed: {elapsed:?}"
    );
    assert!(server.metrics.throttled.get() > 0);
    assert_eq!(server.audit_lines().len(), 300);
}

#[test]
fn a_burst_within_the_rate_is_never_throttled() {
    // docs/operations.md#limits-and-failure-behaviour, greedy client: the rate
    // limit slows an address past its rate, and only then. A turn takes tokens
    // for the lines it can answer, not for a whole batch (64 lines), so bursts
    // of 20 connections from one address, 60 requests in all, within the bucket
    // of 60 even without a refill, never wait for tokens another turn holds.
    let server = TestServer::start_with(|c| {
        c.server.max_rate_per_ip = Some("60/s".parse().unwrap());
        // Turns overlap more often with more workers.
        c.server.workers = 8;
    });
    for burst in 0..3u64 {
        let streams: Vec<_> = (0..20u64)
            .map(|i| connect_sending(server.addr, format!("{}\n", burst * 20 + i).as_bytes()))
            .collect();
        for (i, mut stream) in (0..).zip(streams) {
            let mut reply = String::new();
            stream.read_to_string(&mut reply).unwrap();
            assert_eq!(reply, reply_for(burst * 20 + i));
        }
    }
    assert_eq!(
        server.metrics.throttled.get(),
        0,
        "a connection waited for tokens though the address was within its rate"
    );
}

#[test]
fn a_stop_is_prompt_with_an_active_keep_alive_client() {
    let mut server = ServerProcess::start(&["--keep-alive", "--shutdown-timeout", "30s"]);
    let mut stream = connect(server.addr);
    let mut replies = BufReader::new(stream.try_clone().unwrap());
    let mut answered = Vec::new();
    // A line every 200 ms, as the client did; stop after the third.
    let mut signalled = None;
    for n in 0..200u64 {
        if stream.write_all(format!("{n}\n").as_bytes()).is_err() {
            break;
        }
        let mut reply = String::new();
        if replies.read_line(&mut reply).unwrap_or(0) == 0 {
            break;
        }
        answered.push((n.to_string(), reply.trim().to_owned()));
        if n == 2 {
            server.signal(libc::SIGINT);
            signalled = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let status = server.wait(IO_TIMEOUT);
    assert_eq!(status.code(), Some(0));
    let stop_took = signalled.expect("signalled").elapsed();
    assert!(
        answered.len() <= 4,
        "lines answered after the stop: {answered:?}"
    );
    // Well within the 30 s shutdown timeout (the client would go on for 40 s).
    assert!(stop_took < Duration::from_secs(10), "{stop_took:?}");
    let audited = audited_answers(&server.audit_lines());
    for (n, code) in &answered {
        assert!(
            audited.contains(&(n.clone(), code.clone())),
            "{n} {code} not audited"
        );
    }
}

#[test]
fn a_stop_is_prompt_with_an_active_echo_client() {
    let mut server = ServerProcess::start_echo(&["--shutdown-timeout", "30s"]);
    let mut stream = connect(server.addr);
    let mut replies = BufReader::new(stream.try_clone().unwrap());
    let mut signalled = None;
    for n in 0..200u64 {
        if stream.write_all(format!("line {n}\n").as_bytes()).is_err() {
            break;
        }
        let mut reply = String::new();
        if replies.read_line(&mut reply).unwrap_or(0) == 0 {
            break;
        }
        assert_eq!(reply, format!("GOT:line {n}\n"));
        if n == 2 {
            server.signal(libc::SIGINT);
            signalled = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
    assert!(signalled.expect("signalled").elapsed() < Duration::from_secs(10));
}

#[test]
fn the_shutdown_timeout_bounds_the_stop_and_is_reported() {
    // A heavy test keeps the stop waiting; with a tiny shutdown timeout the
    // queued heavy requests are closed unanswered and counted.
    let mut server = ServerProcess::start(&[
        "--big-tests",
        "1",
        "--shutdown-timeout",
        "100ms",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let heavy = heavy_prime();
    let clients: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = connect(server.addr);
            s.write_all(format!("{heavy}\n").as_bytes()).unwrap();
            s
        })
        .collect();
    assert!(wait_until(IO_TIMEOUT, || {
        server.metric("prime_server_big_tests_running") == 1.0
            && server.metric("prime_server_big_tests_queued") == 3.0
    }));
    server.signal(libc::SIGINT);
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
    let stderr = server.stderr();
    assert!(stderr.contains("shutdown timeout reached"), "{stderr}");
    assert!(stderr.contains("abandoned: 4"), "{stderr}");
    // The queued three got no reply; whatever was answered was logged first.
    let answered = clients
        .into_iter()
        .filter(|mut s| {
            let mut reply = Vec::new();
            let _ = s.read_to_end(&mut reply);
            reply == b"T\n"
        })
        .count();
    assert!(answered <= 1, "{answered}");
    assert_eq!(read_lines(&server.audit_path).len(), answered);
}

#[test]
fn a_stalled_stderr_never_stops_the_service() {
    // stderr goes to a pipe nobody reads once the server has started, at
    // debug level (a record per request): the log channel fills, records
    // are dropped and counted, and every request is still answered.
    let server = ServerProcess::start_with(
        &[
            "--log-level",
            "debug",
            "--keep-alive",
            "--admin-listen",
            "127.0.0.1:0",
        ],
        |command| {
            command.stderr(Stdio::piped());
        },
    );
    server.stop_reading_stderr();
    let mut stream = connect(server.addr);
    let lines = 20_000;
    let mut writer = stream.try_clone().unwrap();
    let feeder = std::thread::spawn(move || {
        let request = "17\n".repeat(lines);
        writer.write_all(request.as_bytes()).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut replies = String::new();
    stream.read_to_string(&mut replies).unwrap();
    feeder.join().unwrap();
    assert_eq!(replies.len(), lines * 2, "every line answered");
    assert!(server.metric("prime_server_log_records_dropped_total") > 0.0);
}
