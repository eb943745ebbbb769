//! Persistent connections, the echo service, JSON logs and the client's
//! modes: pipelined keep-alive lines answered in order with one audit line
//! each, idle and per-line deadlines, echo with concurrent clients, JSON log
//! records, and client output formats and exit statuses.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use test_support::{
    audit::parse_audit,
    io::{ask, connect, read_to_close, reply_for},
    process::ServerProcess,
    server::TestServer,
};

fn keep_alive_server(max_lines: u64) -> TestServer {
    TestServer::start_with(|c| {
        c.prime.keep_alive = Some(max_lines);
        c.server.limits.idle_timeout = Duration::from_millis(500);
    })
}

#[test]
fn pipelined_lines_are_answered_in_order_with_one_audit_line_each() {
    // docs/protocol.md#keep-alive-mode: lines answered in order, each with its
    // own audit line, pipelining allowed.
    let server = keep_alive_server(u64::MAX);
    let mut stream = connect(server.addr);
    stream
        .write_all(b"2\n4\n4j\n+017\n-5\n170141183460469231731687303715884105727\n")
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut stream), b"T\nF\nE\nT\nF\nT\n");
    let audit = server.audit_lines();
    let records: Vec<_> = audit.iter().map(|l| parse_audit(l)).collect();
    let codes: Vec<&str> = records.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(codes, ["T", "F", "E", "T", "F", "T"]);
    assert_eq!(records[3].phrase, "'17' is a prime number");
    let peer = &records[0].peer;
    assert!(
        records.iter().all(|r| &r.peer == peer),
        "one connection, one peer"
    );
}

#[test]
fn many_pipelined_lines_keep_their_order() {
    // docs/protocol.md#keep-alive-mode: pipelined lines are answered in order.
    let server = keep_alive_server(u64::MAX);
    let stream = connect(server.addr);
    let mut writer = stream.try_clone().unwrap();
    let count = 20_000u64;
    let feeder = std::thread::spawn(move || {
        let mut batch = String::new();
        for n in 0..count {
            batch.push_str(&format!("{n}\n"));
        }
        writer.write_all(batch.as_bytes()).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let reader = BufReader::new(stream);
    let mut n = 0u64;
    for line in reader.lines() {
        let line = line.unwrap();
        assert_eq!(format!("{line}\n"), reply_for(n), "reply {n}");
        n += 1;
    }
    feeder.join().unwrap();
    assert_eq!(n, count);
    assert_eq!(server.audit_lines().len() as u64, count);
}

#[test]
fn idle_keep_alive_connections_are_closed() {
    // docs/protocol.md#keep-alive-mode: the connection ends after
    // --idle-timeout without a new line (500 ms here; the request timeout
    // is 5 s).
    let server = keep_alive_server(u64::MAX);
    let mut stream = connect(server.addr);
    stream.write_all(b"7\n").unwrap();
    let mut reply = [0u8; 2];
    stream.read_exact(&mut reply).unwrap();
    let answered = Instant::now();
    assert_eq!(&reply, b"T\n");
    // No more lines: the server closes after the idle timeout, not before,
    // and well before the request timeout could have done it.
    assert_eq!(read_to_close(&mut stream), b"");
    let idle = answered.elapsed();
    assert!(idle >= Duration::from_millis(500), "closed after {idle:?}");
    assert!(idle < Duration::from_millis(2_500), "closed after {idle:?}");
    let summary = server.stop();
    assert_eq!(summary.timeouts, 0, "idling between lines is not a timeout");
}

#[test]
fn the_request_deadline_applies_to_each_line_from_its_first_byte() {
    // docs/protocol.md#keep-alive-mode: the request deadline applies to each
    // line, from its first byte (500 ms here), not from accept or the last
    // reply.
    let server = TestServer::start_with(|c| {
        c.prime.keep_alive = Some(u64::MAX);
        c.server.limits.request_timeout = Duration::from_millis(500);
        c.server.limits.idle_timeout = Duration::from_secs(30);
    });
    let mut stream = connect(server.addr);
    stream.set_nodelay(true).unwrap();
    stream.write_all(b"11\n").unwrap();
    let mut reply = [0u8; 2];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"T\n");
    // Idle longer than the request timeout: idling is not a request.
    std::thread::sleep(Duration::from_millis(800));
    // A second line trickled over about 300 ms: within 500 ms of its first
    // byte, though 1.1 s after accept and 800 ms after the last reply.
    for byte in b"13\n" {
        stream.write_all(std::slice::from_ref(byte)).unwrap();
        std::thread::sleep(Duration::from_millis(150));
    }
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(
        &reply, b"T\n",
        "the second line was cut though it was in time"
    );
    // A third line that never ends is cut 500 ms after its first byte.
    let mut reader = stream.try_clone().unwrap();
    let started = Instant::now();
    let closed = std::thread::spawn(move || (read_to_close(&mut reader), started.elapsed()));
    let mut sent = 0;
    while sent < 50 && stream.write_all(b"1").is_ok() && !closed.is_finished() {
        sent += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let (rest, after) = closed.join().unwrap();
    assert_eq!(rest, b"", "no reply to the slow line");
    assert!(after >= Duration::from_millis(500), "cut after {after:?}");
    assert!(after < Duration::from_millis(2_000), "cut after {after:?}");
    assert_eq!(server.audit_lines().len(), 2);
    assert_eq!(server.stop().timeouts, 1);
}

#[test]
fn max_requests_per_connection_closes_after_that_many_lines() {
    // docs/operations.md#running-it, --max-requests-per-conn N (the flag on the
    // binary: client_exits_1_when_a_keep_alive_server_closes_early).
    let server = keep_alive_server(2);
    let mut stream = connect(server.addr);
    stream.write_all(b"3\n5\n7\n").unwrap();
    assert_eq!(read_to_close(&mut stream), b"T\nT\n");
    assert_eq!(server.audit_lines().len(), 2);
}

#[test]
fn echo_serves_several_clients_at_once() {
    // docs/protocol.md#the-echo-service: GOT: plus each line, many clients at
    // once, EOF ends a connection.
    let server = ServerProcess::start_echo(&["--workers", "4"]);
    // Four clients hold their connections open at the same time, each
    // interleaving lines with the others.
    let mut clients: Vec<(TcpStream, BufReader<TcpStream>)> = (0..4)
        .map(|_| {
            let s = connect(server.addr);
            let r = BufReader::new(s.try_clone().unwrap());
            (s, r)
        })
        .collect();
    for round in 0..50 {
        for (i, (stream, reader)) in clients.iter_mut().enumerate() {
            let line = format!("client {i} line {round} \\ é");
            stream.write_all(format!("{line}\n").as_bytes()).unwrap();
            let mut reply = String::new();
            reader.read_line(&mut reply).unwrap();
            assert_eq!(reply, format!("GOT:{line}\n"));
        }
    }
    // EOF ends a connection; a last line without a newline is still echoed.
    let (mut stream, _) = clients.pop().unwrap();
    stream.write_all(b"last").unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(read_to_close(&mut stream), b"GOT:last\n");
}

#[test]
fn echo_pipelined_and_idle_timeout_and_graceful_stop() {
    // docs/protocol.md#the-echo-service and --idle-timeout: closes after the
    // idle timeout; stops gracefully on Ctrl-C.
    let mut server = ServerProcess::start_echo(&["--idle-timeout", "300ms"]);
    let mut stream = connect(server.addr);
    stream.write_all(b"a\nb\n\nc\r\n").unwrap();
    // The idle timeout closes the connection after the replies.
    assert_eq!(read_to_close(&mut stream), b"GOT:a\nGOT:b\nGOT:\nGOT:c\r\n");
    server.signal(libc::SIGINT);
    assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(0));
    let stderr = server.stderr();
    assert!(
        stderr.contains("shutdown complete") && stderr.contains("lines: 4"),
        "{stderr}"
    );
}

#[test]
fn echo_closes_an_over_long_or_unfinished_line_without_a_reply() {
    // docs/protocol.md#the-echo-service: a line longer than --max-line-bytes,
    // or one that does not finish within the request timeout, closes the
    // connection without a reply (the lines before it are echoed).
    let server = ServerProcess::start_echo(&[
        "--max-line-bytes",
        "16",
        "--request-timeout",
        "500ms",
        "--idle-timeout",
        "30s",
    ]);
    let mut long = connect(server.addr);
    long.write_all(b"sixteen bytes ok\nseventeen bytes x\nnever read\n")
        .unwrap();
    assert_eq!(read_to_close(&mut long), b"GOT:sixteen bytes ok\n");
    let mut slow = connect(server.addr);
    slow.write_all(b"fine\nunfinis").unwrap();
    let started = Instant::now();
    assert_eq!(read_to_close(&mut slow), b"GOT:fine\n");
    let after = started.elapsed();
    assert!(
        after >= Duration::from_millis(400),
        "closed after {after:?}"
    );
    assert!(after < Duration::from_secs(5), "closed after {after:?}");
}

#[test]
fn json_log_format_is_json_line_by_line_with_the_same_keys() {
    // docs/operations.md#terminal-logs, --log-format json and --log-level
    // debug: one JSON object per record.
    let mut server = ServerProcess::start(&["--log-format", "json", "--log-level", "debug"]);
    for line in ["17", "\x1b[31mred"] {
        assert_eq!(ask(server.addr, line).len(), 2);
    }
    server.signal(libc::SIGINT);
    assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(0));
    let stderr = server.stderr();
    let records: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}")))
        .collect();
    for record in &records {
        for key in ["ts", "level", "msg"] {
            assert!(record.get(key).is_some(), "record lacks {key}: {record}");
        }
    }
    let msgs: Vec<&str> = records.iter().filter_map(|r| r["msg"].as_str()).collect();
    for msg in [
        "starting prime-server",
        "listening",
        "answered",
        "shutdown complete",
    ] {
        assert!(msgs.contains(&msg), "no {msg:?} record in {msgs:?}");
    }
    let answered: Vec<_> = records.iter().filter(|r| r["msg"] == "answered").collect();
    assert_eq!(answered[0]["code"], "T");
    assert!(answered[0]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    assert!(answered[0]["micros"].is_u64());
    assert_eq!(answered[1]["input"], "'\\x1b[31mred'");
    let summary = records
        .iter()
        .find(|r| r["msg"] == "shutdown complete")
        .unwrap();
    assert_eq!(summary["prime"], 1);
    assert_eq!(summary["not_integer"], 1);
}

fn client(args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prime-client"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(input.as_bytes());
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

#[test]
fn client_keep_alive_quiet_streams_stdin_in_order() {
    // docs/protocol.md#the-client, --keep-alive --quiet, against prime-server
    // --keep-alive.
    let server = ServerProcess::start(&["--keep-alive"]);
    let numbers: String = (1..=20_000).map(|n| format!("{n}\n")).collect();
    let out = client(
        &[
            "--addr",
            &server.addr.to_string(),
            "--keep-alive",
            "--quiet",
        ],
        &numbers,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let codes: Vec<&str> = stdout.lines().collect();
    assert_eq!(codes.len(), 20_000);
    assert_eq!(
        codes.iter().filter(|c| **c == "T").count(),
        2262,
        "primes up to 20000"
    );
    assert_eq!(codes[16], "T", "17 is the 17th line");
    assert_eq!(server.audit_lines().len(), 20_000);
}

#[test]
fn client_json_output_has_input_code_meaning_micros() {
    // docs/protocol.md#the-client, --json.
    let server = ServerProcess::start(&[]);
    let out = client(
        &[
            "--addr",
            &server.addr.to_string(),
            "--json",
            "17",
            "4j",
            "-0",
        ],
        "",
    );
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let objects: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 3);
    assert_eq!(objects[0]["input"], "17");
    assert_eq!(objects[0]["code"], "T");
    assert_eq!(objects[0]["meaning"], "prime");
    assert!(objects[0]["micros"].is_u64());
    assert_eq!(objects[1]["code"], "E");
    assert_eq!(objects[1]["meaning"], "not an integer");
    assert_eq!(objects[2]["meaning"], "not prime");
}

#[test]
fn client_exits_1_when_a_keep_alive_server_closes_early() {
    // docs/protocol.md#the-client: exit 1 when the server closes early;
    // docs/operations.md#running-it, --max-requests-per-conn on the binary.
    let server = ServerProcess::start(&["--keep-alive", "--max-requests-per-conn", "2"]);
    let out = client(
        &[
            "--addr",
            &server.addr.to_string(),
            "--keep-alive",
            "--quiet",
            "2",
            "3",
            "4",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "T\nT\n");
    assert!(String::from_utf8_lossy(&out.stderr).contains("without replying"));
}

#[test]
fn echo_server_help_and_bad_flags() {
    // docs/protocol.md#the-echo-service: same flags, ECHO_SERVER_LISTEN.
    let help = Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("GOT:")
            && text.contains("--idle-timeout")
            && text.contains("ECHO_SERVER_LISTEN")
    );
    let bad = Command::new(env!("CARGO_BIN_EXE_echo-server"))
        .args(["--workers", "0"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}
