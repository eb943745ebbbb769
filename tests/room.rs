//! The waiting room: slow, stalled, idle and non-reading clients hold no
//! worker, deadlines still apply, and a stop with clients waiting is
//! prompt. docs/operations.md#limits-and-failure-behaviour: slow client,
//! clients that send a byte and stall, idle keep-alive clients, slow reader,
//! stop. Loopback only; every wait is bounded.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;
use test_support::{
    io::{
        ask, closed_by_server, connect, connect_sending, metric, read_to_close, wait_until,
        IO_TIMEOUT,
    },
    process::ServerProcess,
    server::TestServer,
};

/// A client socket bound to `source` (another 127.0.0.0/8 address).
fn connect_from(source: [u8; 4], addr: SocketAddr) -> TcpStream {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket.bind(&SocketAddr::from((source, 0)).into()).unwrap();
    socket.connect_timeout(&addr.into(), IO_TIMEOUT).unwrap();
    let stream: TcpStream = socket.into();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

#[test]
fn stalled_clients_hold_no_worker() {
    // docs/operations.md#limits-and-failure-behaviour, clients that send a byte
    // and stall: they wait in the room, holding no worker.
    // Two workers, fifty clients that send one byte and stall, and a
    // deadline of a minute: before the waiting room, the honest request
    // waited behind them until they timed out.
    let server = TestServer::start_with(|c| {
        c.server.workers = 2;
        c.server.limits.request_timeout = Duration::from_secs(60);
    });
    let stalled: Vec<TcpStream> = (0..50u8)
        .map(|i| {
            let mut s = connect_from([127, 0, 1, 1 + i % 25], server.addr);
            s.write_all(b"1").unwrap();
            s
        })
        .collect();
    assert!(
        wait_until(IO_TIMEOUT, || server.metrics.waiting.get() == 50),
        "the stalled clients should all wait in the room, {} do",
        server.metrics.waiting.get()
    );
    for _ in 0..20 {
        assert_eq!(ask(server.addr, "17"), "T\n");
    }
    // Answered while every stalled client still waits, far from its deadline.
    assert_eq!(server.metrics.waiting.get(), 50);
    assert_eq!(server.metrics.timeouts.get(), 0);
    drop(stalled);
}

#[test]
fn idle_keep_alive_clients_take_turns_on_one_worker() {
    // docs/protocol.md#keep-alive-mode: an idle keep-alive connection holds no
    // worker between lines.
    // One worker and a long idle timeout: a keep-alive connection used to
    // pin the worker between its lines, so the second client waited.
    let server = TestServer::start_with(|c| {
        c.server.workers = 1;
        c.server.limits.idle_timeout = Duration::from_secs(60);
        c.prime.keep_alive = Some(u64::MAX);
    });
    let mut a = connect(server.addr);
    let mut b = connect(server.addr);
    let mut a_replies = BufReader::new(a.try_clone().unwrap());
    let mut b_replies = BufReader::new(b.try_clone().unwrap());
    for (line, expected) in [("2", "T\n"), ("4", "F\n"), ("5", "T\n"), ("9", "F\n")] {
        for (client, replies) in [(&mut a, &mut a_replies), (&mut b, &mut b_replies)] {
            client.write_all(format!("{line}\n").as_bytes()).unwrap();
            let mut reply = String::new();
            replies.read_line(&mut reply).unwrap();
            assert_eq!(reply, expected);
        }
    }
    assert_eq!(server.audit_lines().len(), 8);
}

#[test]
fn a_line_split_across_many_small_writes_is_answered() {
    // docs/protocol.md#one-request: a line is the bytes up to the first
    // newline, however they arrive.
    let server = TestServer::start();
    let mut stream = connect(server.addr);
    stream.set_nodelay(true).unwrap();
    let line = b"  +1_000_000_007\r\n";
    for byte in line {
        stream.write_all(std::slice::from_ref(byte)).unwrap();
        // Pace the bytes so they arrive as separate segments.
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(read_to_close(&mut stream), b"T\n");
    let lines = server.audit_lines();
    assert!(
        lines[0].ends_with(" T '1000000007' is a prime number"),
        "{lines:?}"
    );
}

#[test]
fn a_slow_over_long_line_gets_e_as_soon_as_it_passes_the_limit() {
    // docs/operations.md#limits-and-failure-behaviour, over-long line: E as
    // soon as the limit is passed, without waiting for the line to end.
    let server = TestServer::start_with(|c| {
        c.server.limits.max_line_bytes = 100;
        c.server.limits.request_timeout = Duration::from_secs(60);
    });
    let mut stream = connect(server.addr);
    stream.set_nodelay(true).unwrap();
    // Ten bytes at a time, never a newline: the reply comes once 101 bytes
    // are in, long before the deadline, and without the line ending.
    let mut reader = stream.try_clone().unwrap();
    let answer = std::thread::spawn(move || read_to_close(&mut reader));
    for _ in 0..11 {
        if stream.write_all(b"1111111111").is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(answer.join().unwrap(), b"E\n");
    let lines = server.audit_lines();
    assert_eq!(lines.len(), 1);
    assert!(
        lines[0].ends_with("is not an integer: line longer than 100 bytes"),
        "{lines:?}"
    );
}

#[test]
fn a_client_that_does_not_read_holds_no_worker() {
    // One worker; a client pipelines big lines to the echo service and never
    // reads the replies, so they back up. The other client is still served,
    // and the hog is cut off at the write timeout.
    // docs/operations.md#limits-and-failure-behaviour, slow reader:
    // --write-timeout (2 s here, 5 s by default) bounds how long replies wait
    // for a client to read them.
    let mut server = ServerProcess::start_echo(&["--workers", "1", "--write-timeout", "2s"]);
    let mut hog = connect(server.addr);
    let line = [b"x".repeat(60_000), b"\n".to_vec()].concat();
    let started = std::time::Instant::now();
    let writer = std::thread::spawn(move || {
        for _ in 0..2_000 {
            if let Err(e) = hog.write_all(&line) {
                return Some((e, started.elapsed()));
            }
        }
        None
    });
    for i in 0..5 {
        let mut s = connect(server.addr);
        s.write_all(format!("hello {i}\n").as_bytes()).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        assert_eq!(
            read_to_close(&mut s),
            format!("GOT:hello {i}\n").into_bytes()
        );
    }
    let (error, after) = writer
        .join()
        .unwrap()
        .expect("the hog should have been cut off");
    // Cut by the server (not by the test's own write timeout), once its
    // replies had waited the write timeout, not the default's 5 s.
    assert!(closed_by_server(&error), "{error}");
    assert!(after >= Duration::from_secs(2), "cut after {after:?}");
    assert!(after < Duration::from_millis(4_500), "cut after {after:?}");
    server.expect_stderr("client did not read its replies in time", IO_TIMEOUT);
    server.signal(libc::SIGINT);
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
}

#[test]
fn a_stop_with_clients_in_the_room_is_prompt_and_closes_them_without_a_reply() {
    // docs/operations.md#stopping: a stop answers complete lines and closes
    // unfinished ones without a reply, promptly.
    let mut server = ServerProcess::start(&["--request-timeout", "60s", "--workers", "2"]);
    let mut stalled: Vec<TcpStream> = (0..50)
        .map(|_| connect_sending(server.addr, b"1"))
        .collect();
    // A complete line sent just before the stop is still answered.
    let mut honest = connect_sending(server.addr, b"7\n");
    assert_eq!(read_to_close(&mut honest), b"T\n");
    server.signal(libc::SIGINT);
    // Far sooner than the 60 s deadline (the wait's own bound is 20 s).
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
    for s in &mut stalled {
        assert_eq!(read_to_close(s), b"", "no reply for a line never finished");
    }
    let stderr = server.stderr();
    assert!(stderr.contains("closed_at_stop: 50"), "{stderr}");
    assert_eq!(server.audit_lines().len(), 1);
}

#[test]
fn a_trickling_client_is_still_cut_at_its_deadline() {
    // docs/operations.md#limits-and-failure-behaviour, slow client: trickling a
    // byte at a time does not extend the deadline.
    let server = TestServer::start_with(|c| {
        c.server.limits.request_timeout = Duration::from_millis(600);
    });
    let mut stream = connect(server.addr);
    let mut reader = stream.try_clone().unwrap();
    let reply = std::thread::spawn(move || read_to_close(&mut reader));
    // A byte every 50 ms keeps arriving, but the deadline counts from accept.
    let mut sent = 0;
    while sent < 400 && stream.write_all(b"1").is_ok() {
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
        if server.metrics.timeouts.get() == 1 {
            break;
        }
    }
    assert_eq!(reply.join().unwrap(), b"");
    assert_eq!(server.metrics.timeouts.get(), 1);
    assert!(sent < 400, "the trickle was never cut");
    assert!(server.audit_lines().is_empty());
}

#[test]
fn per_address_connection_cap() {
    // docs/operations.md#running-it, --max-connections-per-ip (the flag itself:
    // binary.rs the_per_address_flags_cap_connections_and_rate).
    let server = TestServer::start_with(|c| {
        c.server.max_connections_per_ip = Some(3);
        c.server.limits.request_timeout = Duration::from_secs(60);
    });
    let held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = connect_from([127, 0, 2, 1], server.addr);
            s.write_all(b"1").unwrap();
            s
        })
        .collect();
    assert!(wait_until(IO_TIMEOUT, || server.metrics.waiting.get() == 3));
    // A fourth from the same address is closed without a reply...
    let mut fourth = connect_from([127, 0, 2, 1], server.addr);
    fourth.write_all(b"17\n").unwrap();
    assert_eq!(read_to_close(&mut fourth), b"");
    assert_eq!(server.metrics.per_ip_refused.get(), 1);
    // ...another address is served...
    let mut other = connect_from([127, 0, 2, 2], server.addr);
    other.write_all(b"17\n").unwrap();
    assert_eq!(read_to_close(&mut other), b"T\n");
    // ...and once one closes, the address may connect again.
    drop(held);
    assert!(wait_until(IO_TIMEOUT, || server.metrics.open.get() == 0));
    let mut again = connect_from([127, 0, 2, 1], server.addr);
    again.write_all(b"17\n").unwrap();
    assert_eq!(read_to_close(&mut again), b"T\n");
    let (_, text) = server.admin_get("/metrics");
    assert_eq!(
        metric(&text, "prime_server_per_ip_refusals_total"),
        Some(1.0)
    );
}
