//! Slow, hostile and broken clients, and faults in the server's own
//! environment: deadlines, the line limit, admission, accept() errors,
//! panics, heavy numbers, kill -9, shutdown under load, pipelined junk,
//! log rotation and log injection. Loopback only; every loop is bounded.

mod support;

use prime_server::conn::{Connection, Line};
use prime_server::health::Health;
use prime_server::metrics::CoreMetrics;
use prime_server::server::{serve, ServerOptions};
use prime_server::shutdown::Shutdown;
use prime_server::worker::{Flow, Handler};
use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{
    ask, ask_line, audited_answers, capture_logger, connect, connect_sending, open_sockets,
    parse_audit, read_to_close, under_load, wait_until, ServerProcess, TestServer, IO_TIMEOUT,
};

/// 2^11213 - 1, a Mersenne prime of 3376 digits: a heavy test (about half
/// a second) well inside the 4300-digit limit.
fn heavy_prime() -> String {
    let n = (rug::Integer::from(1) << 11213u32) - 1u32;
    n.to_string()
}

#[test]
fn a_trickling_client_is_cut_off_at_the_deadline() {
    let server = ServerProcess::start(&["--request-timeout", "1s"]);
    let mut stream = connect(server.addr);
    let client_addr = stream.local_addr().unwrap();
    let mut reader = stream.try_clone().unwrap();
    let closed = Arc::new(AtomicBool::new(false));
    let closed_by_server = Arc::clone(&closed);
    let reader = std::thread::spawn(move || {
        let reply = read_to_close(&mut reader);
        closed_by_server.store(true, Ordering::SeqCst);
        reply
    });
    // One byte every 200 ms: each read succeeds, but the line never ends.
    let mut sent = 0;
    while sent < 25 && !closed.load(Ordering::SeqCst) {
        if stream.write_all(b"1").is_err() {
            break;
        }
        sent += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let reply = reader.join().unwrap();
    assert!(
        reply.is_empty(),
        "a timed-out request gets no reply: {reply:?}"
    );
    assert!(
        sent < 25,
        "the server held the connection for the whole trickle"
    );
    assert!(
        server.audit_lines().is_empty(),
        "a timed-out request has no audit line"
    );
    assert!(
        server.wait_for_stderr(IO_TIMEOUT, |text| text.lines().any(|l| l.contains("WARN")
            && l.contains("timed out")
            && l.contains(&client_addr.to_string()))),
        "no warn record naming the peer: {}",
        server.stderr()
    );
}

#[test]
fn an_over_long_line_gets_e_and_the_server_stops_reading() {
    let server = TestServer::start_with(|c| c.server.limits.max_line_bytes = 1024);
    let mut stream = connect(server.addr);
    let mut writer = stream.try_clone().unwrap();
    let total = 16 * 1024 * 1024;
    let feeder = std::thread::spawn(move || {
        let chunk = [b'7'; 64 * 1024];
        let mut written = 0;
        while written < total {
            match writer.write(&chunk) {
                Ok(n) => written += n,
                Err(_) => break,
            }
        }
        written
    });
    let reply = read_to_close(&mut stream);
    drop(stream);
    let written = feeder.join().unwrap();
    assert_eq!(reply, b"E\n");
    assert!(
        written < total,
        "the server read all {total} bytes of an over-long line"
    );
    let record = parse_audit(&server.audit_lines()[0]);
    assert_eq!(record.code, "E");
    assert!(
        record.phrase.contains("...[+"),
        "input is cut with a marker: {}",
        record.phrase
    );
    assert!(
        record
            .phrase
            .ends_with("is not an integer: line longer than 1024 bytes"),
        "{}",
        record.phrase
    );
}

#[test]
fn the_default_line_limit_fits_the_largest_integer_with_padding() {
    let server = TestServer::start();
    let digits: String = std::iter::repeat_n("9_", 4299).collect::<String>() + "9";
    let line = format!("{}{}{}", " ".repeat(20_000), digits, "\t".repeat(20_000));
    assert_eq!(ask(server.addr, &line), "F\n");
}

#[test]
fn pipelined_junk_does_not_destroy_the_first_answer() {
    let server = TestServer::start();
    let junk: Vec<u8> = b"17\n"
        .iter()
        .copied()
        .chain(b"18\n".repeat(200_000))
        .collect();
    for _ in 0..20 {
        let mut stream = connect(server.addr);
        let mut writer = stream.try_clone().unwrap();
        let junk = junk.clone();
        let feeder = std::thread::spawn(move || {
            let _ = writer.write_all(&junk);
        });
        let reply = read_to_close(&mut stream);
        feeder.join().unwrap();
        assert_eq!(reply, b"T\n");
    }
    assert_eq!(server.audit_lines().len(), 20);
}

/// A handler that queues `hello`, then panics on the line `panic`.
struct Panicky;

impl Handler for Panicky {
    type Heavy = std::convert::Infallible;

    fn serve(&self, conn: &mut Connection, _log: &slog::Logger) -> Flow<Self::Heavy> {
        while let Some(Line::Complete(line)) = conn.next_line() {
            conn.queue_reply(b"hello\n");
            assert_ne!(line, b"panic", "asked to panic");
        }
        Flow::Close
    }

    fn serve_heavy(
        &self,
        job: Self::Heavy,
        _: &mut Connection,
        _: &slog::Logger,
    ) -> Flow<Self::Heavy> {
        match job {}
    }
}

#[test]
fn a_panic_is_contained_logged_with_the_peer_and_the_server_serves_on() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let (log, records) = capture_logger();
    let options = ServerOptions {
        workers: 1,
        ..ServerOptions::default()
    };
    let metrics = CoreMetrics::new();
    let stop = shutdown.clone();
    let counted = metrics.clone();
    let server = std::thread::spawn(move || {
        serve(
            listener,
            &stop,
            Arc::new(Panicky),
            &options,
            &counted,
            &Health::new(),
            &log,
        )
        .unwrap();
    });

    let mut panicking_peers = Vec::new();
    for _ in 0..10 {
        let mut stream = connect(addr);
        panicking_peers.push(stream.local_addr().unwrap());
        stream.write_all(b"panic\n").unwrap();
        // The reply queued before the panic is still sent.
        assert_eq!(read_to_close(&mut stream), b"hello\n");
    }
    // The single worker lives on.
    for _ in 0..3 {
        assert_eq!(ask_line(addr, b"fine"), b"hello\n");
    }
    shutdown.request();
    server.join().unwrap();
    assert_eq!(metrics.panics.get(), 10);
    let text = String::from_utf8(records.lock().unwrap().clone()).unwrap();
    for peer in panicking_peers {
        assert!(
            text.lines()
                .any(|l| l.contains("handler panicked") && l.contains(&peer.to_string())),
            "no panic record for {peer}: {text}"
        );
    }
}

#[test]
fn heavy_numbers_do_not_starve_light_ones() {
    let server = TestServer::start_with(|c| {
        c.server.workers = 8;
        c.server.heavy_threads = 1;
    });
    let heavy = heavy_prime();
    let heavy_done = AtomicUsize::new(0);
    let heavy_clients = 4;
    std::thread::scope(|scope| {
        for _ in 0..heavy_clients {
            scope.spawn(|| {
                assert_eq!(ask(server.addr, &heavy), "T\n");
                heavy_done.fetch_add(1, Ordering::SeqCst);
            });
        }
        // Let the heavy tests start, then run light requests alongside.
        std::thread::sleep(Duration::from_millis(100));
        for n in 0..50u64 {
            let expected = if prime_server::prime::is_prime_u64(n) {
                "T\n"
            } else {
                "F\n"
            };
            assert_eq!(ask(server.addr, &n.to_string()), expected);
        }
        // With one big test at a time, four take several seconds; fifty
        // light requests must not have waited behind all of them.
        assert!(
            heavy_done.load(Ordering::SeqCst) < heavy_clients,
            "light requests were served only after every heavy one"
        );
    });
}

#[test]
fn idle_connections_do_not_occupy_workers() {
    if !cfg!(target_os = "linux") {
        eprintln!("skipping: TCP_DEFER_ACCEPT is Linux-only");
        return;
    }
    // The binary reports "listening" only once TCP_DEFER_ACCEPT is set.
    let server = ServerProcess::start(&["--workers", "1", "--request-timeout", "60s"]);
    // These connect and send nothing. With one worker and a 60 s deadline,
    // an honest client behind them would wait a minute if they were handed
    // to the pool; the read timeout of `ask` (20 s) would fail the test.
    let _idle: Vec<TcpStream> = (0..5).map(|_| connect(server.addr)).collect();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ask(server.addr, "17"), "T\n");
}

#[test]
fn admission_caps_open_connections() {
    let server = ServerProcess::start(&["--max-connections", "3", "--request-timeout", "20s"]);
    let pid = server.child.id();
    let baseline = open_sockets(pid).expect("/proc/<pid>/fd is readable on Linux");
    // Each sends a partial line, so it is accepted (data arrived) and then
    // waits in the room; past the cap, connections wait in the backlog.
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| connect_sending(server.addr, b"1"))
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || open_sockets(pid)
            == Some(baseline + 3)),
        "the server should hold exactly 3 client sockets, holds {:?}",
        open_sockets(pid).map(|n| n - baseline)
    );
    // It stays at the cap: finishing the lines lets everyone through in turn.
    assert_eq!(open_sockets(pid), Some(baseline + 3));
    for s in &mut held {
        s.write_all(b"7\n").unwrap();
    }
    for s in &mut held {
        assert_eq!(read_to_close(s), b"T\n");
    }
}

#[test]
fn accept_errors_back_off_and_service_resumes() {
    // Room for the process's own descriptors and a few clients only.
    let limit: libc::rlim_t = 24;
    let mut server = ServerProcess::start_with(
        &[
            "--workers",
            "4",
            "--max-connections",
            "100",
            "--request-timeout",
            "20s",
        ],
        |command| {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs
            // between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    let rl = libc::rlimit {
                        rlim_cur: limit,
                        rlim_max: limit,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        },
    );
    let mut flood: Vec<TcpStream> = (0..60)
        .map(|_| connect_sending(server.addr, b"1"))
        .collect();
    assert!(
        wait_until(Duration::from_secs(10), || server
            .stderr()
            .contains("accept failed")),
        "no accept error logged: {}",
        server.stderr()
    );
    // Finish the flood's lines: everything gets served once descriptors free up.
    for s in &mut flood {
        s.write_all(b"3\n").unwrap();
    }
    for s in &mut flood {
        assert_eq!(read_to_close(s), b"T\n");
    }
    drop(flood);
    assert_eq!(ask(server.addr, "17"), "T\n");
    server.signal(libc::SIGINT);
    assert_eq!(server.wait(Duration::from_secs(20)).code(), Some(0));
    let stderr = server.stderr();
    assert!(stderr.contains("retry_in"), "{stderr}");
    assert!(!stderr.contains("accept_errors: 0"), "{stderr}");
}

#[test]
fn kill_9_never_leaves_a_reply_without_its_audit_line() {
    let mut server = ServerProcess::start(&["--workers", "8"]);
    let ((), received) = under_load(server.addr, 8, || {
        std::thread::sleep(Duration::from_millis(400));
        server.signal(libc::SIGKILL);
        server.wait(Duration::from_secs(10));
    });
    assert!(received.len() > 10, "load did not get going");
    let audited = audited_answers(&server.audit_lines());
    for answer in &received {
        assert!(
            audited.contains(answer),
            "reply {answer:?} has no audit line"
        );
    }
}

#[test]
fn shutdown_under_load_answers_or_refuses_every_queued_connection() {
    let deadline = Duration::from_secs(2);
    let mut server = ServerProcess::start(&["--workers", "2", "--request-timeout", "2s"]);
    // Two slow clients hold both workers until their deadline.
    let mut slow: Vec<TcpStream> = (0..2).map(|_| connect_sending(server.addr, b"1")).collect();
    std::thread::sleep(Duration::from_millis(200));
    // Hundreds of honest requests queue behind them.
    let mut queued: Vec<TcpStream> = (0..300)
        .map(|_| connect_sending(server.addr, b"17\n"))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let signalled = Instant::now();
    server.signal(libc::SIGINT);
    let status = server.wait(deadline + Duration::from_secs(8));
    let stopped_after = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    let mut answered = 0;
    for s in &mut queued {
        match read_to_close(s).as_slice() {
            b"T\n" => answered += 1,
            b"" => {} // refused or reset before any reply: clean
            other => panic!("reply lost halfway: {other:?}"),
        }
    }
    for s in &mut slow {
        assert_eq!(read_to_close(s), b"", "timed-out clients get no reply");
    }
    let audit = server.audit_lines();
    assert_eq!(
        audit.len(),
        answered,
        "every answer has exactly one audit line"
    );
    assert!(
        answered > 0,
        "queued connections were accepted but none answered"
    );
    eprintln!(
        "shutdown under load: {answered}/300 queued answered, stopped after {stopped_after:?}"
    );
}

#[test]
fn copytruncate_rotation_leaves_no_hole() {
    let server = TestServer::start();
    for n in 0..10 {
        ask(server.addr, &n.to_string());
    }
    // What logrotate's copytruncate does after copying: truncate in place.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&server.audit_path)
        .unwrap()
        .set_len(0)
        .unwrap();
    for n in 10..15 {
        ask(server.addr, &n.to_string());
    }
    let raw = std::fs::read(&server.audit_path).unwrap();
    assert!(!raw.contains(&0), "NUL-filled hole after truncation");
    let audit = server.audit_lines();
    assert_eq!(audit.len(), 5);
    assert!(
        audit[0].contains("'10'"),
        "first line after truncation is at offset 0: {audit:?}"
    );
}

#[test]
fn terminal_log_never_carries_raw_client_bytes() {
    let server = ServerProcess::start(&["--log-level", "debug"]);
    let hostile: &[&[u8]] = &[
        b"\x1b]0;pwned\x07",
        b"\x1b[2J",
        b"ok\rFAKE RECORD",
        b"\xff\xfe\x9b",
        b"\\'\"",
    ];
    for line in hostile {
        assert_eq!(ask_line(server.addr, line), b"E\n");
    }
    assert!(wait_until(Duration::from_secs(5), || server
        .stderr()
        .matches("answered")
        .count()
        == hostile.len()));
    let stderr = server.stderr();
    assert!(
        stderr
            .bytes()
            .all(|b| b == b'\n' || (0x20..0x7f).contains(&b)),
        "raw control or non-ASCII byte in the terminal log: {stderr:?}"
    );
    assert!(stderr.contains("\\x1b]0;pwned\\x07"), "{stderr}");
}

#[test]
fn many_clients_at_once_all_get_answers() {
    let server = TestServer::start_with(|c| c.server.workers = 4);
    let replies: HashMap<String, usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                scope.spawn(move || {
                    (0..50)
                        .map(|i| ask(server.addr, &(t * 50 + i).to_string()))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut counts = HashMap::new();
        for h in handles {
            for r in h.join().unwrap() {
                *counts.entry(r).or_insert(0) += 1;
            }
        }
        counts
    });
    // 800 numbers 0..800: 139 primes below 800.
    assert_eq!(replies.get("T\n"), Some(&139));
    assert_eq!(replies.get("F\n"), Some(&661));
}
