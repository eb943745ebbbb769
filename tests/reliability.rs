//! Slow, hostile and broken clients, and faults in the server's own
//! environment: deadlines, the line limit, admission, accept() errors,
//! panics, heavy numbers, kill -9, shutdown under load, pipelined junk,
//! log rotation and log injection. Loopback only; every loop is bounded.

use prime_server::net::CoreMetrics;
use prime_server::net::Liveness;
use prime_server::net::Shutdown;
use prime_server::net::{serve, ServerOptions};
use prime_server::net::{Connection, Line};
use prime_server::net::{Flow, Handler};
use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use test_support::{
    audit::{audited_answers, parse_audit},
    io::{
        ask, ask_line, connect, connect_sending, read_to_close, under_load, wait_until, IO_TIMEOUT,
    },
    process::ServerProcess,
    server::{capture_logger, TestServer},
    sock_diag::{accept_queue, server_side_state},
    tools::skip,
};

#[test]
fn a_trickling_client_is_cut_off_at_the_deadline() {
    // docs/operations.md#limits-and-failure-behaviour, slow client: the line
    // must arrive whole within --request-timeout from accept; no reply, no
    // audit line, a warn record naming the peer.
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
    // docs/operations.md#limits-and-failure-behaviour, over-long line: E, an
    // audit line with a cut marker, and the server stops reading (at most
    // max-line-bytes + 4 KiB buffered; the exact bound is conn.rs
    // an_endless_line_is_bounded_by_the_limit_plus_one_read).
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
    // docs/operations.md#limits-and-failure-behaviour, over-long line: 64 KiB
    // leaves room for a 4300-digit number with underscores and padding.
    let server = TestServer::start();
    let digits: String = std::iter::repeat_n("9_", 4299).collect::<String>() + "9";
    let line = format!("{}{}{}", " ".repeat(20_000), digits, "\t".repeat(20_000));
    assert_eq!(ask(server.addr, &line), "F\n");
}

#[test]
fn pipelined_junk_does_not_destroy_the_first_answer() {
    // docs/operations.md#limits-and-failure-behaviour, pipelined junk in
    // default mode: the first line is answered intact (half-close, drain,
    // close).
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

#[test]
fn junk_sent_with_the_line_gets_an_orderly_close_not_a_reset() {
    // What the lingering close is for: closing with unread input makes the
    // kernel send a reset, which many TCP stacks (and middleboxes) treat as
    // "discard what you have not read yet", the reply included. Linux
    // keeps data already received, so the test looks at the close itself:
    // after the reply the client must see an orderly end (the server's
    // FIN), not ECONNRESET.
    use std::io::Read;
    let server = TestServer::start();
    // More than one read (4 KiB) takes, less than a lingering close drains
    // (256 KiB): the rest is still in the kernel when the reply is sent.
    let mut request = b"17\n".to_vec();
    request.extend(b"18\n".repeat(4000));
    for _ in 0..20 {
        let mut stream = connect(server.addr);
        stream.write_all(&request).unwrap();
        let mut reply = [0u8; 2];
        stream.read_exact(&mut reply).unwrap();
        assert_eq!(&reply, b"T\n");
        let mut rest = Vec::new();
        let end = stream.read_to_end(&mut rest);
        assert!(
            matches!(end, Ok(0)),
            "after the reply: {end:?} (a reset, not the server's FIN)"
        );
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

/// A handler that answers `ok`, except that the line `wait` first holds
/// its worker until the test opens the gate (or 20 s pass).
#[derive(Default)]
struct Gate {
    /// Whether the gate is open.
    open: std::sync::Mutex<bool>,
    /// Signalled when it opens.
    opened: std::sync::Condvar,
}

impl Gate {
    fn open(&self) {
        *self.open.lock().unwrap() = true;
        self.opened.notify_all();
    }
}

impl Handler for Gate {
    type Heavy = std::convert::Infallible;

    fn serve(&self, conn: &mut Connection, _log: &slog::Logger) -> Flow<Self::Heavy> {
        while let Some(Line::Complete(line)) = conn.next_line() {
            if line == b"wait" {
                let open = self.open.lock().unwrap();
                let _ = self
                    .opened
                    .wait_timeout_while(open, IO_TIMEOUT, |open| !*open);
            }
            conn.queue_reply(b"ok\n");
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
fn time_queued_for_a_worker_is_not_held_against_a_client() {
    // docs/operations.md#limits-and-failure-behaviour, slow client: time a
    // connection spent queued for a worker is not held against it. One worker,
    // held by a request; a complete line queued behind it outlives its 300 ms
    // deadline and is still answered.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = Shutdown::new();
    let options = ServerOptions {
        workers: 1,
        limits: prime_server::net::Limits {
            request_timeout: Duration::from_millis(300),
            ..prime_server::net::Limits::default()
        },
        ..ServerOptions::default()
    };
    let metrics = CoreMetrics::new();
    let gate = Arc::new(Gate::default());
    let server = {
        let (stop, counted, gate) = (shutdown.clone(), metrics.clone(), Arc::clone(&gate));
        std::thread::spawn(move || {
            let log = prime_server::ops::discard();
            serve(
                listener,
                &stop,
                gate,
                &options,
                &counted,
                &Liveness::new(),
                &log,
            )
            .unwrap();
        })
    };
    // Opens the gate and stops the server even if an assertion fails.
    struct Finish<'a>(&'a Gate, &'a Shutdown);
    impl Drop for Finish<'_> {
        fn drop(&mut self) {
            self.0.open();
            self.1.request();
        }
    }
    let finish = Finish(&gate, &shutdown);
    let mut holder = connect_sending(addr, b"wait\n");
    assert!(wait_until(IO_TIMEOUT, || metrics.in_service.get() == 1));
    let mut queued = connect_sending(addr, b"x\n");
    assert!(wait_until(IO_TIMEOUT, || metrics.queued.get() == 1));
    // A client that connects later and stalls times out first: by then
    // the queued line's deadline has passed too.
    let _stalled = connect_sending(addr, b"1");
    assert!(wait_until(IO_TIMEOUT, || metrics.timeouts.get() == 1));
    gate.open();
    assert_eq!(read_to_close(&mut queued), b"ok\n");
    assert_eq!(read_to_close(&mut holder), b"ok\n");
    assert_eq!(
        metrics.timeouts.get(),
        1,
        "only the stalled client timed out"
    );
    drop(finish);
    server.join().unwrap();
}

#[test]
fn a_panic_is_contained_logged_with_the_peer_and_the_server_serves_on() {
    // docs/operations.md#limits-and-failure-behaviour, a handler panics:
    // caught, logged at error with the peer, the worker lives on.
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
            &Liveness::new(),
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
fn silent_clients_stay_in_the_kernel_until_they_send() {
    // docs/operations.md#limits-and-failure-behaviour: clients that connect and
    // send nothing are kept in the kernel by TCP_DEFER_ACCEPT (Linux) until
    // data arrives, so the server never even accepts them; `--no-defer-accept`
    // turns that off.
    if !cfg!(target_os = "linux") {
        return skip("TCP_DEFER_ACCEPT is Linux-only");
    }
    for (flags, silent_accepted) in [(&[][..], 0.0), (&["--no-defer-accept"][..], 5.0)] {
        let mut args = vec!["--admin-listen", "127.0.0.1:0"];
        args.extend_from_slice(flags);
        let server = ServerProcess::start(&args);
        let silent: Vec<TcpStream> = (0..5).map(|_| connect(server.addr)).collect();
        // Once the server's kernel has each handshake, a later request is
        // queued behind them: when it is answered, the silent ones have
        // been accepted if they ever would be.
        for s in &silent {
            let me = s.local_addr().unwrap();
            assert!(
                wait_until(IO_TIMEOUT, || server_side_state(server.addr, me).is_some()),
                "{flags:?}: the handshake of {me} never reached the server's kernel"
            );
        }
        assert_eq!(ask(server.addr, "17"), "T\n");
        assert_eq!(
            server.metric("prime_server_connections_accepted_total"),
            1.0 + silent_accepted,
            "{flags:?}"
        );
    }
}

#[test]
fn admission_caps_open_connections() {
    // docs/operations.md#limits-and-failure-behaviour: burst of connections: at
    // most --max-connections are open at once; the kernel backlog holds the
    // rest until one closes.
    let server = ServerProcess::start(&[
        "--max-connections",
        "3",
        "--request-timeout",
        "20s",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    // Each sends a partial line, so it is accepted (data arrived) and then
    // waits in the room; past the cap, connections wait in the backlog.
    let mut held: Vec<TcpStream> = (0..20)
        .map(|_| connect_sending(server.addr, b"1"))
        .collect();
    // Every connection is in one place or the other: three accepted and
    // open, seventeen in the kernel's queue. Nothing moves from here until
    // a line ends, so the counts are exact.
    assert!(
        wait_until(IO_TIMEOUT, || accept_queue(server.addr) == Some(17)
            && server.metric("prime_server_connections_accepted_total") == 3.0),
        "accepted {}, queued in the kernel {:?}",
        server.metric("prime_server_connections_accepted_total"),
        accept_queue(server.addr)
    );
    assert_eq!(server.metric("prime_server_connections_open"), 3.0);
    // Finishing the lines lets everyone through in turn.
    for s in &mut held {
        s.write_all(b"7\n").unwrap();
    }
    for s in &mut held {
        assert_eq!(read_to_close(s), b"T\n");
    }
    assert_eq!(
        server.metric("prime_server_connections_accepted_total"),
        20.0
    );
}

#[test]
fn accept_errors_back_off_and_service_resumes() {
    // docs/operations.md#limits-and-failure-behaviour, accept() fails: logged
    // at warn, retried with back-off, service resumes (RLIMIT_NOFILE=24 and a
    // flood). Room for the process's own descriptors and a few clients only.
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
    // docs/operations.md#limits-and-failure-behaviour, kill -9, and
    // docs/audit-integrity.md#guarantees: a reply a client received always has
    // its audit line.
    let mut server = ServerProcess::start(&["--workers", "8"]);
    let ((), received) = under_load(server.addr, 8, || {
        // Kill once the load is going.
        assert!(
            wait_until(IO_TIMEOUT, || server.audit_lines().len() >= 50),
            "the load did not get going"
        );
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
fn kill_9_during_a_pipelined_flood_never_leaves_a_reply_without_its_audit_line() {
    // docs/protocol.md#keep-alive-mode and docs/audit-integrity.md#guarantees:
    // the audit lines of a batch of pipelined lines are written before any of
    // their replies, so after `kill -9` in the middle of a pipelined flood
    // every reply a client received has its audit line: per connection, the
    // first k lines logged for it are the k answers it got, in order.
    let mut server = ServerProcess::start(&["--keep-alive", "--idle-timeout", "60s"]);
    let addr = server.addr;
    let clients: Vec<_> = (0..4u64)
        .map(|c| {
            let stream = connect(addr);
            let peer = stream.local_addr().expect("local address").to_string();
            let mut writer = stream.try_clone().expect("clone the stream");
            // Numbers from 10^6 up, so every client's lines differ and
            // the replies mix T and F.
            let first = 1_000_000 * (c + 1);
            let sender = std::thread::spawn(move || {
                for chunk in 0..2_000u64 {
                    let batch: String = (0..1_000)
                        .map(|i| format!("{}\n", first + chunk * 1_000 + i))
                        .collect();
                    if writer.write_all(batch.as_bytes()).is_err() {
                        return;
                    }
                }
            });
            let receiver = std::thread::spawn(move || {
                let mut stream = stream;
                let mut got = Vec::new();
                let mut buf = [0u8; 65536];
                // Until the kill closes the connection (or the read
                // timeout, if it never comes).
                while let Ok(n @ 1..) = std::io::Read::read(&mut stream, &mut buf) {
                    got.extend_from_slice(&buf[..n]);
                }
                got
            });
            (peer, first, sender, receiver)
        })
        .collect();
    assert!(
        wait_until(IO_TIMEOUT, || server.audit_lines().len() >= 20_000),
        "the flood did not get going"
    );
    server.signal(libc::SIGKILL);
    server.wait(Duration::from_secs(10));
    let lines = server.audit_lines();
    let mut total = 0;
    for (peer, first, sender, receiver) in clients {
        let _ = sender.join();
        let got = receiver.join().expect("receiver");
        // A reply write cut short by the kill may leave a letter without
        // its newline: only whole replies count as received.
        let replies: Vec<&[u8]> = got.chunks_exact(2).collect();
        let logged: Vec<(String, String)> = lines
            .iter()
            .map(|l| parse_audit(l))
            .filter(|r| r.peer == peer)
            .map(|r| {
                (
                    r.phrase.split('\'').nth(1).unwrap_or_default().to_owned(),
                    r.code,
                )
            })
            .collect();
        assert!(
            logged.len() >= replies.len(),
            "{peer}: {} replies received but only {} audit lines",
            replies.len(),
            logged.len()
        );
        for (i, (reply, (n, code))) in replies.iter().zip(&logged).enumerate() {
            let sent = (first + i as u64).to_string();
            assert_eq!(n, &sent, "{peer}: audit line {i} is for another line");
            assert_eq!(
                reply,
                &format!("{code}\n").as_bytes(),
                "{peer}: reply {i} differs from its audit line"
            );
        }
        total += replies.len();
    }
    assert!(total > 1_000, "too few replies to mean anything: {total}");
    eprintln!("kill -9 during a pipelined flood: {total} replies, each with its audit line");
}

#[test]
fn a_stop_answers_every_connection_queued_in_the_backlog() {
    // docs/operations.md#limits-and-failure-behaviour, Ctrl-C under load:
    // connections the kernel had completed but not handed over are answered
    // too. Two stalled clients fill `--max-connections 2`, so 300 honest
    // requests wait in the kernel's backlog; at the stop the stalled ones are
    // closed without a reply and all 300 are answered, promptly (the deadline
    // is a minute).
    let mut server = ServerProcess::start(&[
        "--max-connections",
        "2",
        "--request-timeout",
        "60s",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let mut stalled: Vec<TcpStream> = (0..2).map(|_| connect_sending(server.addr, b"1")).collect();
    assert!(wait_until(IO_TIMEOUT, || server
        .metric("prime_server_connections_waiting")
        == 2.0));
    let mut queued: Vec<TcpStream> = (0..300)
        .map(|_| connect_sending(server.addr, b"17\n"))
        .collect();
    assert!(
        wait_until(IO_TIMEOUT, || accept_queue(server.addr) == Some(300)),
        "queued in the kernel: {:?}",
        accept_queue(server.addr)
    );
    let signalled = Instant::now();
    server.signal(libc::SIGINT);
    let status = server.wait(IO_TIMEOUT);
    let stopped_after = signalled.elapsed();
    assert_eq!(status.code(), Some(0));
    for s in &mut queued {
        assert_eq!(read_to_close(s), b"T\n", "a queued request unanswered");
    }
    for s in &mut stalled {
        assert_eq!(read_to_close(s), b"", "an unfinished line gets no reply");
    }
    assert_eq!(server.audit_lines().len(), 300, "one audit line per answer");
    let stderr = server.stderr();
    assert!(stderr.contains("served_from_backlog: 300"), "{stderr}");
    assert!(stderr.contains("closed_at_stop: 2"), "{stderr}");
    assert!(stopped_after < Duration::from_secs(15), "{stopped_after:?}");
    eprintln!("shutdown with 300 in the backlog: all answered, stopped after {stopped_after:?}");
}

#[test]
fn a_stop_serves_at_most_4096_connections_from_the_backlog() {
    // docs/operations.md#limits-and-failure-behaviour, Ctrl-C under load:
    // queued connections are answered up to 4096 (SHUTDOWN_DRAIN_LIMIT), so a
    // flood cannot keep a stopping server busy; the rest are reset before any
    // reply. The kernel queues at most somaxconn + 1 connections per listener:
    // 4097 here.
    let somaxconn: usize = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0);
    let limit = prime_server::net::SHUTDOWN_DRAIN_LIMIT;
    if somaxconn < limit {
        return skip(&format!(
            "net.core.somaxconn is {somaxconn}: the kernel cannot queue more than {limit} connections"
        ));
    }
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    socket.listen(i32::try_from(limit).unwrap()).unwrap();
    // One connection slot, held by a stalled client: the rest queue.
    let server = TestServer::start_on(socket.into(), |c| {
        c.server.max_connections = 1;
        c.server.limits.request_timeout = Duration::from_secs(60);
    });
    let _stalled = connect_sending(server.addr, b"1");
    assert!(wait_until(IO_TIMEOUT, || server.metrics.waiting.get() == 1));
    let queued_count = limit + 1;
    let mut queued: Vec<TcpStream> = (0..queued_count)
        .map(|_| connect_sending(server.addr, b"2\n"))
        .collect();
    assert!(
        wait_until(IO_TIMEOUT, || accept_queue(server.addr)
            == Some(queued_count as u64)),
        "queued in the kernel: {:?}",
        accept_queue(server.addr)
    );
    let summary = server.stop();
    let mut answered = 0;
    for s in &mut queued {
        match read_to_close(s).as_slice() {
            b"T\n" => answered += 1,
            b"" => {}
            other => panic!("a reply lost halfway: {other:?}"),
        }
    }
    assert_eq!(answered, limit, "answered from the backlog; {summary:?}");
    assert_eq!(summary.connections, 1 + limit as u64);
    assert_eq!(summary.service.prime, limit as u64);
}

#[test]
fn copytruncate_rotation_leaves_no_hole() {
    // docs/operations.md#limits-and-failure-behaviour, log rotation:
    // copytruncate leaves no NUL-filled hole (append mode).
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
    // docs/operations.md#limits-and-failure-behaviour, log injection: every
    // client byte in the terminal log is escaped.
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
    // docs/protocol.md#one-request: concurrent clients each get the right
    // answer.
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
