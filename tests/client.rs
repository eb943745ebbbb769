//! `prime-client` and the library's client against real servers on
//! `127.0.0.1:0`: answers shown as they arrive in keep-alive mode, timeouts
//! reported in words, and exit statuses.

use prime_server::client::{ask_pipelined, Exchange};
use prime_server::prime::Verdict;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use test_support::{io::IO_TIMEOUT, server::TestServer};

/// A keep-alive server in this process, answering any number of lines.
fn keep_alive_server(max_lines: u64) -> TestServer {
    TestServer::start_with(|config| config.prime.keep_alive = Some(max_lines))
}

/// `prime-client` with `args`, its stdin, stdout and stderr piped.
fn spawn_client(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_prime-client"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn prime-client")
}

/// Each line the child prints, delivered as it is printed.
fn stdout_lines(child: &mut Child) -> Receiver<String> {
    let out = child.stdout.take().expect("stdout piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (bounded) for the child to exit; returns its status and stderr.
fn finish(mut child: Child) -> (ExitStatus, String) {
    let mut pipe = child.stderr.take().expect("stderr piped");
    // The pipe closes when the child exits; the wait below bounds it.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let status = wait_bounded(&mut child);
    (status, reader.join().expect("stderr reader"))
}

/// The child's exit status, failing the test if it takes over [`IO_TIMEOUT`].
fn wait_bounded(child: &mut Child) -> ExitStatus {
    let until = Instant::now() + IO_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > until {
            let _ = child.kill();
            panic!("prime-client did not exit within {IO_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Writes one line to the child's stdin.
fn type_line(stdin: &mut ChildStdin, line: &str) {
    stdin
        .write_all(format!("{line}\n").as_bytes())
        .expect("write to prime-client");
    stdin.flush().expect("flush");
}

/// A peer that accepts one connection, reads whatever comes and never
/// replies, until the client closes; returns its address and what it read.
fn silent_server() -> (SocketAddr, JoinHandle<Vec<u8>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let thread = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        conn.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        let mut got = Vec::new();
        let _ = conn.read_to_end(&mut got);
        got
    });
    (addr, thread)
}

#[test]
fn pipelined_lines_are_sent_as_soon_as_they_are_given() {
    let server = keep_alive_server(u64::MAX);
    let addr = server.addr;
    // The lines come from a channel, like a person typing: the next one is
    // given only once the previous answer is back.
    let (give, lines) = mpsc::channel::<Vec<u8>>();
    let (answer, answers) = mpsc::channel::<Exchange>();
    let client = std::thread::spawn(move || {
        let mut sink = |e: Exchange| {
            let _ = answer.send(e);
        };
        ask_pipelined(addr, lines, Duration::from_secs(5), &mut sink)
    });
    for (line, want) in [
        ("17", Verdict::Prime),
        ("4", Verdict::NotPrime),
        ("4j", Verdict::NotInteger),
    ] {
        give.send(line.as_bytes().to_vec())
            .expect("client is running");
        let got = answers
            .recv_timeout(IO_TIMEOUT)
            .unwrap_or_else(|_| panic!("no answer to {line:?} while the next line is withheld"));
        assert_eq!((got.input.as_slice(), got.verdict), (line.as_bytes(), want));
    }
    drop(give);
    let answered = client.join().expect("client thread");
    assert_eq!(answered.expect("every line answered"), 3);
    assert_eq!(server.audit_lines().len(), 3);
}

#[test]
fn pipelined_bulk_answers_arrive_in_order() {
    let server = keep_alive_server(u64::MAX);
    let lines: Vec<Vec<u8>> = (0..20_000u64).map(|n| n.to_string().into_bytes()).collect();
    let mut got = Vec::new();
    let answered = ask_pipelined(
        server.addr,
        lines.clone(),
        Duration::from_secs(10),
        &mut |e: Exchange| got.push(e),
    )
    .expect("every line answered");
    assert_eq!(answered, 20_000);
    let inputs: Vec<Vec<u8>> = got.iter().map(|e| e.input.clone()).collect();
    assert_eq!(inputs, lines);
    let primes = got.iter().filter(|e| e.verdict == Verdict::Prime).count();
    assert_eq!(primes, 2262, "primes below 20000");
    assert_eq!(got[17].verdict, Verdict::Prime);
    assert_eq!(got[18].verdict, Verdict::NotPrime);
}

#[test]
fn keep_alive_client_shows_each_answer_before_the_next_line() {
    let server = keep_alive_server(u64::MAX);
    let addr = server.addr.to_string();
    let timeout = Duration::from_millis(300);
    let mut child = spawn_client(&["--addr", &addr, "--keep-alive", "--timeout", "300ms"]);
    let mut stdin = child.stdin.take().expect("stdin piped");
    let printed = stdout_lines(&mut child);

    type_line(&mut stdin, "17");
    let first = printed
        .recv_timeout(IO_TIMEOUT)
        .expect("17's answer is printed while the client waits for the next line");
    assert!(first.starts_with("17: T (prime) in "), "{first}");

    // The pause of the bug report: the person types nothing for longer than
    // the timeout. That is not the server being slow, so no error.
    std::thread::sleep(timeout * 3);

    type_line(&mut stdin, "4");
    let second = printed.recv_timeout(IO_TIMEOUT).expect("4's answer");
    assert!(second.starts_with("4: F (not prime) in "), "{second}");
    drop(stdin);
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
    assert_eq!(server.audit_lines().len(), 2, "one connection, two lines");
}

#[test]
fn one_shot_client_reading_stdin_shows_each_answer_before_the_next_line() {
    let server = TestServer::start();
    let addr = server.addr.to_string();
    let mut child = spawn_client(&["--addr", &addr, "--quiet"]);
    let mut stdin = child.stdin.take().expect("stdin piped");
    let printed = stdout_lines(&mut child);
    for (line, want) in [("17", "T"), ("4", "F")] {
        type_line(&mut stdin, line);
        let got = printed
            .recv_timeout(IO_TIMEOUT)
            .unwrap_or_else(|_| panic!("no answer to {line} while the next line is withheld"));
        assert_eq!(got, want);
    }
    drop(stdin);
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(server.audit_lines().len(), 2);
}

#[test]
fn one_shot_timeout_is_reported_in_words_with_exit_1() {
    let (addr, peer) = silent_server();
    let child = spawn_client(&["--addr", &addr.to_string(), "--timeout", "300ms", "17"]);
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "prime-client: timed out after 300ms waiting for the server's reply\n"
    );
    assert_eq!(peer.join().expect("peer"), b"17\n");
}

#[test]
fn keep_alive_timeout_is_reported_in_words_with_exit_1() {
    let (addr, peer) = silent_server();
    let mut child = spawn_client(&[
        "--addr",
        &addr.to_string(),
        "--keep-alive",
        "--quiet",
        "--timeout",
        "300ms",
    ]);
    // The client times out with stdin still open: it must not wait for more
    // input to report it.
    let mut stdin = child.stdin.take().expect("stdin piped");
    type_line(&mut stdin, "17");
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "prime-client: timed out after 300ms waiting for the server's reply\n"
    );
    assert_eq!(peer.join().expect("peer"), b"17\n");
    drop(stdin);
}

#[test]
fn server_closing_before_every_answer_is_exit_1() {
    // The server answers two lines per connection, the client sends three.
    let server = keep_alive_server(2);
    let addr = server.addr.to_string();
    let mut child = spawn_client(&["--addr", &addr, "--keep-alive", "--quiet", "2", "3", "4"]);
    let printed = stdout_lines(&mut child);
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr,
        "prime-client: the server closed the connection without replying\n"
    );
    let got: Vec<String> = printed.iter().collect();
    assert_eq!(got, ["T", "T"], "the answers that did arrive are printed");
}

#[test]
fn keep_alive_client_answering_everything_exits_0() {
    let server = keep_alive_server(u64::MAX);
    let addr = server.addr.to_string();
    let mut child = spawn_client(&["--addr", &addr, "--keep-alive", "--quiet"]);
    let mut stdin = child.stdin.take().expect("stdin piped");
    let printed = stdout_lines(&mut child);
    // Blank lines are skipped; a line that is not UTF-8 is still asked about
    // (and sent as it is: see the_client_sends_the_bytes_it_is_given).
    stdin
        .write_all(b"2\n\n4\n\xff7\n5\r\n")
        .expect("write to prime-client");
    drop(stdin);
    let got: Vec<String> = (0..4)
        .map(|_| printed.recv_timeout(IO_TIMEOUT).expect("an answer"))
        .collect();
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert_eq!(got, ["T", "F", "E", "T"]);
    assert!(printed.recv_timeout(IO_TIMEOUT).is_err(), "nothing more");
}

#[test]
fn the_client_sends_the_bytes_it_is_given() {
    use std::os::unix::ffi::OsStrExt;
    let server = TestServer::start();
    let addr = server.addr.to_string();
    // From stdin: invalid UTF-8 goes out as it came, not as U+FFFD.
    let mut child = spawn_client(&["--addr", &addr, "--quiet"]);
    let mut stdin = child.stdin.take().expect("stdin piped");
    stdin.write_all(b"x\xffy\n").expect("write to prime-client");
    drop(stdin);
    let (status, stderr) = finish(child);
    assert_eq!(status.code(), Some(0), "{stderr}");
    // From the arguments, likewise.
    let output = Command::new(env!("CARGO_BIN_EXE_prime-client"))
        .args(["--addr", &addr, "--quiet"])
        .arg(std::ffi::OsStr::from_bytes(b"\xfe7"))
        .output()
        .expect("run prime-client");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(output.stdout, b"E\n");
    let phrases: Vec<String> = server
        .audit_lines()
        .iter()
        .map(|line| line.splitn(4, ' ').nth(3).unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        phrases,
        ["'x\\xffy' is not an integer", "'\\xfe7' is not an integer"],
        "the audit log quotes the bytes sent"
    );
}
