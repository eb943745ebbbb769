//! The real binaries as a user runs them: flags, exit statuses, start-up
//! failures, graceful and forced shutdown, and `prime-client`.

use std::io::Write as _;
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use test_support::{
    audit::{audited_answers, parse_audit},
    io::{
        ask, connect, connect_sending, read_to_close, reply_for, try_connect_from, under_load,
        unused_addr, wait_until, IO_TIMEOUT,
    },
    process::ServerProcess,
    tools::skip,
};

/// Runs a binary to completion with a bounded wait and no stdin.
fn run_bin(path: &str, args: &[&str]) -> Output {
    let mut child = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let done = wait_until(Duration::from_secs(30), || {
        matches!(child.try_wait(), Ok(Some(_)))
    });
    if !done {
        let _ = child.kill();
        panic!("{path} {args:?} did not finish");
    }
    child.wait_with_output().expect("output")
}

fn server(args: &[&str]) -> Output {
    run_bin(env!("CARGO_BIN_EXE_prime-server"), args)
}

fn client(args: &[&str]) -> Output {
    run_bin(env!("CARGO_BIN_EXE_prime-client"), args)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Every option of a binary's clap definition: (long flag, env var).
fn options(command: &clap::Command) -> Vec<(String, Option<String>)> {
    command
        .get_arguments()
        .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
        .map(|a| {
            let long = a
                .get_long()
                .unwrap_or_else(|| panic!("{} has no --flag", a.get_id()));
            let env = a.get_env().map(|e| e.to_string_lossy().into_owned());
            (format!("--{long}"), env)
        })
        .collect()
}

/// The env var a flag must have: the binary's prefix and the flag's name,
/// upper case with underscores (`--max-line-bytes`:
/// `PRIME_SERVER_MAX_LINE_BYTES`).
fn env_name(prefix: &str, flag: &str) -> String {
    format!(
        "{prefix}_{}",
        flag.trim_start_matches("--")
            .to_uppercase()
            .replace('-', "_")
    )
}

#[test]
fn help_and_version() {
    use clap::CommandFactory;
    // docs/operations.md#running-it: `--help` and `--version` do what they say;
    // every flag is listed with its env var.
    let help = server(&["--help"]);
    assert!(help.status.success());
    let help = text(&help.stdout);
    let flags = options(&prime_server::ops::flags::ServerArgs::command());
    assert!(flags.len() >= 20, "{flags:?}");
    for (flag, env) in &flags {
        assert!(help.contains(flag.as_str()), "--help lacks {flag}");
        let env = env
            .as_deref()
            .unwrap_or_else(|| panic!("{flag} has no env var"));
        assert!(help.contains(env), "--help lacks {env}");
    }
    let version = server(&["--version"]);
    assert!(version.status.success());
    assert_eq!(
        text(&version.stdout).trim(),
        format!("prime-server {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn each_binary_says_what_it_is() {
    // Each binary's --help starts with its own description, not the
    // package's (which describes the server).
    let package = env!("CARGO_PKG_DESCRIPTION");
    for (binary, words) in [
        (env!("CARGO_BIN_EXE_prime-server"), "answers T (prime)"),
        (env!("CARGO_BIN_EXE_prime-client"), "Ask a prime-server"),
        (env!("CARGO_BIN_EXE_echo-server"), "echo service"),
        (
            env!("CARGO_BIN_EXE_prime-audit"),
            "verifies sealed audit logs",
        ),
    ] {
        let out = Command::new(binary)
            .arg("--help")
            .output()
            .expect("run --help");
        assert!(out.status.success(), "{binary} --help");
        let first = text(&out.stdout)
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned();
        assert!(first.contains(words), "{binary}: {first:?}");
        assert!(
            !first.contains(package),
            "{binary} describes the package: {first:?}"
        );
    }
}

/// A value each option of the servers rejects, and what the error must
/// then name: the flag, for the values clap rejects (each flag takes a
/// number, a duration, an address, a list or a boolean), or the path, for
/// `--audit-log` and `--audit-seal`, which take any path and get one under
/// a regular file, which cannot be created.
fn bad_value(flag: &str, scratch: &std::path::Path) -> (String, String) {
    match flag {
        "--audit-log" | "--audit-seal" => {
            let file = scratch.join("file");
            (
                file.join("x").display().to_string(),
                file.display().to_string(),
            )
        }
        _ => ("not-a-value/0".to_owned(), flag.to_owned()),
    }
}

#[test]
fn every_flag_has_its_env_var_and_the_binary_reads_it() {
    use clap::CommandFactory;
    // docs/operations.md#running-it: each flag has an env var named after it.
    // Read from the clap definitions, so a new flag without a variable, or a
    // variable with a typo, fails here; then each variable is given to the
    // real binary with a value it must reject, proving the binary reads
    // that variable for that flag.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), b"").unwrap();
    let binaries = [
        (
            env!("CARGO_BIN_EXE_prime-server"),
            prime_server::ops::flags::ServerArgs::command(),
            "PRIME_SERVER",
        ),
        (
            env!("CARGO_BIN_EXE_echo-server"),
            prime_server::ops::flags::EchoArgs::command(),
            "PRIME_SERVER",
        ),
    ];
    let mut checked = 0;
    for (binary, command, prefix) in binaries {
        for (flag, env) in options(&command) {
            // echo-server's own address has its own variable.
            let prefix = if binary.ends_with("echo-server") && flag == "--listen" {
                "ECHO_SERVER"
            } else {
                prefix
            };
            let expected = env_name(prefix, &flag);
            assert_eq!(env.as_deref(), Some(expected.as_str()), "{binary} {flag}");
            let (value, named) = bad_value(&flag, dir.path());
            // The variable under test last, so it wins over the defaults.
            let mut child = Command::new(binary)
                .env("PRIME_SERVER_LISTEN", "127.0.0.1:0")
                .env("ECHO_SERVER_LISTEN", "127.0.0.1:0")
                .env("PRIME_SERVER_AUDIT_LOG", dir.path().join("audit.log"))
                .env(&expected, &value)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn");
            let exited = wait_until(Duration::from_secs(20), || {
                matches!(child.try_wait(), Ok(Some(_)))
            });
            if !exited {
                let _ = child.kill();
            }
            let out = child.wait_with_output().expect("output");
            let stderr = text(&out.stderr);
            assert!(exited, "{binary}: {expected}={value} was ignored: {stderr}");
            assert_ne!(out.status.code(), Some(0), "{expected}={value}: {stderr}");
            assert!(
                stderr.contains(&named),
                "{binary}: {expected}={value} is not what failed: {stderr}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} options checked");
}

#[test]
fn bad_flags_exit_2_with_clap_message() {
    // docs/operations.md#running-it: exit 2 for bad flags (clap's message);
    // --workers 0 is rejected.
    for args in [
        &["--workers", "0"][..],
        &["--no-such-flag"],
        &["--listen", "not-an-address"],
        &["--log-level", "loud"],
    ] {
        let out = server(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(text(&out.stderr).contains("error:"), "{args:?}");
    }
}

#[test]
fn port_in_use_is_one_sentence_and_exit_1() {
    // docs/operations.md#running-it, --listen: exit 1 with one sentence when
    // the address is in use.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("a.log");
    let out = server(&["--listen", &addr, "--audit-log", audit.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "cannot listen on {addr}: the address is already in use"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}

#[test]
fn unwritable_audit_log_is_one_sentence_and_exit_1() {
    // docs/operations.md#running-it, --audit-log: exit 1 with one sentence when
    // it cannot be opened.
    let dir = tempfile::tempdir().unwrap();
    // A path whose parent is a regular file can never be created.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"").unwrap();
    let audit = blocker.join("audit.log");
    let out = server(&[
        "--listen",
        "127.0.0.1:0",
        "--audit-log",
        audit.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let last = stderr.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("prime-server: cannot create the audit log directory"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn audit_directory_is_created_and_env_vars_work() {
    // docs/audit-integrity.md#guarantees: the directory is created if missing.
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("deep/er/audit.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_prime-server"))
        .env("PRIME_SERVER_LISTEN", "127.0.0.1:0")
        .env("PRIME_SERVER_AUDIT_LOG", &audit)
        .env("PRIME_SERVER_LOG_LEVEL", "debug")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let created = wait_until(Duration::from_secs(20), || audit.exists());
    let _ = child.kill();
    let _ = child.wait();
    assert!(created, "audit log not created from PRIME_SERVER_AUDIT_LOG");
}

#[test]
fn sigint_with_requests_in_flight_is_graceful() {
    // docs/operations.md#stopping: Ctrl-C under load answers what it accepted,
    // logs a summary and exits 0.
    let mut server = ServerProcess::start(&["--workers", "4"]);
    let addr = server.addr;
    let (status, received) = under_load(addr, 8, || {
        // Signal once the load is going.
        assert!(
            wait_until(IO_TIMEOUT, || server.audit_lines().len() >= 50),
            "the load did not get going"
        );
        server.signal(libc::SIGINT);
        server.wait(Duration::from_secs(15))
    });
    assert_eq!(status.code(), Some(0), "graceful stop exits 0");
    assert!(
        received.len() > 10,
        "load did not get going: {}",
        received.len()
    );
    // Every reply a client holds has its audit line.
    let audited = audited_answers(&server.audit_lines());
    for answer in &received {
        assert!(
            audited.contains(answer),
            "reply {answer:?} has no audit line"
        );
    }
    let stderr = server.stderr();
    assert!(stderr.contains("signal received"), "{stderr}");
    assert!(stderr.contains("shutdown complete"), "no summary: {stderr}");
    assert!(stderr.contains("prime: "), "no counts in summary: {stderr}");
}

/// 2^11213 - 1, a Mersenne prime of 3376 digits: a heavy test (about half
/// a second) well inside the 4300-digit limit.
fn heavy_prime() -> String {
    ((rug::Integer::from(1) << 11213u32) - 1u32).to_string()
}

/// Connects `count` clients that each send `line` and wait for the reply.
fn send_each(addr: std::net::SocketAddr, line: &str, count: usize) -> Vec<std::net::TcpStream> {
    (0..count)
        .map(|_| connect_sending(addr, format!("{line}\n").as_bytes()))
        .collect()
}

#[test]
fn connections_are_refused_during_the_drain() {
    // docs/operations.md#stopping: a stop refuses new connections at once,
    // while it answers the accepted ones. Three heavy tests in a one-thread
    // lane keep the drain going for about a second and a half.
    let mut server = ServerProcess::start(&["--big-tests", "1", "--admin-listen", "127.0.0.1:0"]);
    let mut accepted = send_each(server.addr, &heavy_prime(), 3);
    assert!(wait_until(IO_TIMEOUT, || {
        server.metric("prime_server_big_tests_running") == 1.0
            && server.metric("prime_server_big_tests_queued") == 2.0
    }));
    server.signal(libc::SIGINT);
    server.expect_stderr("stopped accepting", IO_TIMEOUT);
    let refused = std::net::TcpStream::connect(server.addr);
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the server exited before the drain could be observed"
    );
    assert_eq!(
        refused.map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "a new connection during the drain must be refused"
    );
    for s in &mut accepted {
        assert_eq!(
            read_to_close(s),
            b"T\n",
            "accepted before the stop: answered"
        );
    }
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
}

#[test]
fn big_tests_bounds_the_big_number_tests_running_at_once() {
    // docs/operations.md#running-it: --big-tests N, big-number tests running at
    // once (3: not the default on this 2-core machine kind).
    let server = ServerProcess::start(&["--big-tests", "3", "--admin-listen", "127.0.0.1:0"]);
    let mut clients = send_each(server.addr, &heavy_prime(), 6);
    assert!(
        wait_until(IO_TIMEOUT, || {
            server.metric("prime_server_big_tests_running") == 3.0
                && server.metric("prime_server_big_tests_queued") == 3.0
        }),
        "three running and three queued, not {} and {}",
        server.metric("prime_server_big_tests_running"),
        server.metric("prime_server_big_tests_queued")
    );
    for s in &mut clients {
        assert_eq!(read_to_close(s), b"T\n");
    }
}

#[test]
fn max_line_bytes_is_the_longest_line_answered() {
    // docs/operations.md#running-it and #limits-and-failure-behaviour:
    // --max-line-bytes N; a longer line gets E, an audit line saying why, and
    // the connection is closed.
    let server = ServerProcess::start(&["--max-line-bytes", "10"]);
    assert_eq!(ask(server.addr, "1000000007"), "T\n", "10 bytes fit");
    assert_eq!(ask(server.addr, "10000000019"), "E\n", "11 bytes do not");
    let lines = server.audit_lines();
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[1].ends_with("'10000000019' is not an integer: line longer than 10 bytes"),
        "{lines:?}"
    );
}

#[test]
fn workers_sets_the_size_of_the_pool() {
    // docs/operations.md#running-it: --workers N, the worker threads.
    let server = ServerProcess::start(&["--workers", "3"]);
    let pid = server.child.id();
    let workers = std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("/proc/<pid>/task is readable on Linux")
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("comm")).ok())
        .filter(|name| name.trim() == "worker")
        .count();
    assert_eq!(workers, 3);
    assert!(
        server.stderr().contains("workers: 3"),
        "{}",
        server.stderr()
    );
}

#[test]
fn the_per_address_flags_cap_connections_and_rate() {
    // docs/operations.md#running-it: --max-connections-per-ip N closes a client
    // address's next connection without a reply; --max-rate-per-ip R/s
    // paces an address's lines without losing or changing any.
    let server =
        ServerProcess::start(&["--max-connections-per-ip", "1", "--request-timeout", "20s"]);
    let from = |last: u8| {
        try_connect_from(std::net::IpAddr::from([127, 0, 4, last]), server.addr).expect("connect")
    };
    let mut held = from(1);
    held.write_all(b"1").unwrap();
    let mut second = from(1);
    second.write_all(b"17\n").unwrap();
    assert_eq!(
        read_to_close(&mut second),
        b"",
        "the address holds its one connection"
    );
    let mut other = from(2);
    other.write_all(b"17\n").unwrap();
    assert_eq!(
        read_to_close(&mut other),
        b"T\n",
        "another address is served"
    );
    held.write_all(b"3\n").unwrap();
    assert_eq!(read_to_close(&mut held), b"T\n");

    let server = ServerProcess::start(&["--keep-alive", "--max-rate-per-ip", "20/s"]);
    let mut stream = connect(server.addr);
    let started = std::time::Instant::now();
    let lines: String = (0..60).map(|n| format!("{n}\n")).collect();
    stream.write_all(lines.as_bytes()).unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let replies = read_to_close(&mut stream);
    let elapsed = started.elapsed();
    let expected: String = (0..60u64).map(reply_for).collect();
    assert_eq!(String::from_utf8(replies).unwrap(), expected);
    // A full bucket (20) at once, the other 40 at 20 a second.
    assert!(
        elapsed >= Duration::from_millis(1_800),
        "not paced: {elapsed:?}"
    );
}

#[test]
fn listening_on_the_ipv6_any_address_serves_ipv6_clients() {
    // docs/operations.md#running-it: IPv6 works; `[::]` binds IPv6.
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        return skip("this machine has no IPv6 loopback");
    }
    let server = ServerProcess::start(&["--listen", "[::]:0"]);
    assert!(
        server.addr.is_ipv6() && server.addr.ip().is_unspecified(),
        "{}",
        server.addr
    );
    let loopback = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, server.addr.port()));
    assert_eq!(ask(loopback, "17"), "T\n");
    let lines = server.audit_lines();
    assert!(
        parse_audit(&lines[0]).peer.starts_with("[::1]:"),
        "{lines:?}"
    );
}

#[test]
fn second_signal_exits_at_once_with_130() {
    // docs/operations.md#stopping: a second signal exits at once with status
    // 130. An echo client that sends big lines and never reads its replies
    // keeps the graceful stop waiting for the write timeout (30 s here).
    let mut server = ServerProcess::start_echo(&[
        "--write-timeout",
        "30s",
        "--shutdown-timeout",
        "60s",
        "--admin-listen",
        "127.0.0.1:0",
    ]);
    let mut hog = connect(server.addr);
    use std::io::Write as _;
    let line = [b"x".repeat(60_000), b"\n".to_vec()].concat();
    let writer = std::thread::spawn(move || {
        // Until the server's and the kernel's buffers are full, or it closes.
        for _ in 0..2_000 {
            if hog.write_all(&line).is_err() {
                break;
            }
        }
        hog
    });
    // The replies have backed up: the connection waits in the room for
    // the client to read.
    assert!(wait_until(Duration::from_secs(10), || server
        .metric("echo_server_connections_waiting")
        == 1.0));
    server.signal(libc::SIGINT);
    assert!(wait_until(Duration::from_secs(10), || server
        .stderr()
        .contains("signal received")));
    assert!(
        server.child.try_wait().unwrap().is_none(),
        "the stop should still be waiting for the slow reader"
    );
    server.signal(libc::SIGTERM);
    let status = server.wait(Duration::from_secs(10));
    assert_eq!(status.code(), Some(130));
    assert!(server
        .stderr()
        .contains("second signal received; exiting immediately"));
    drop(writer);
}

#[test]
fn sigterm_is_graceful_too() {
    // docs/operations.md#stopping: SIGTERM is graceful too.
    let mut server = ServerProcess::start(&[]);
    assert_eq!(ask(server.addr, "7"), "T\n");
    server.signal(libc::SIGTERM);
    assert_eq!(server.wait(Duration::from_secs(10)).code(), Some(0));
    assert!(server.stderr().contains("prime: 1"));
}

#[test]
fn client_prints_meaning_and_time() {
    // docs/protocol.md#the-client: one connection per number, meaning and time.
    let server = ServerProcess::start(&[]);
    let addr = server.addr.to_string();
    let out = client(&["--addr", &addr, "17", "4", "4j", "-5"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<_> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("17: T (prime) in ") && lines[0].ends_with(" ms"),
        "{stdout}"
    );
    assert!(lines[1].starts_with("4: F (not prime) in "), "{stdout}");
    assert!(
        lines[2].starts_with("4j: E (not an integer) in "),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("-5: F (not prime) in "),
        "negative numbers are not flags: {stdout}"
    );
    assert_eq!(server.audit_lines().len(), 4, "one connection per number");
}

#[test]
fn client_reads_stdin_when_no_numbers_are_given() {
    let server = ServerProcess::start(&[]);
    let mut child = Command::new(env!("CARGO_BIN_EXE_prime-client"))
        .args(["--addr", &server.addr.to_string(), "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"2\n3\n4\n\n5\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(text(&out.stdout), "T\nT\nF\nT\n");
}

#[test]
fn client_exit_status_when_server_unreachable_is_1() {
    let addr = unused_addr().to_string();
    let out = client(&["--addr", &addr, "--timeout", "2s", "17"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot connect"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn client_exit_status_on_protocol_violation_is_1() {
    use std::io::{Read, Write};
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = fake.local_addr().unwrap().to_string();
    let thread = std::thread::spawn(move || {
        let (mut s, _) = fake.accept().unwrap();
        let mut buf = [0u8; 16];
        let _ = s.read(&mut buf);
        s.write_all(b"MAYBE\n").unwrap();
    });
    let out = client(&["--addr", &addr, "17"]);
    thread.join().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("broke the protocol"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn client_usage_error_is_2() {
    assert_eq!(client(&["--bogus"]).status.code(), Some(2));
    assert_eq!(client(&["--timeout", "never", "1"]).status.code(), Some(2));
}

#[test]
fn the_shipped_systemd_unit_starts_the_server_with_valid_flags() {
    // docs/operations.md#deployment: the systemd unit.
    use clap::Parser;
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/prime-server.service"
    ))
    .unwrap();
    // systemd joins lines that end in a backslash.
    let joined = unit.replace("\\\n", " ");
    let exec = joined
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("an ExecStart line");
    let args = prime_server::ops::flags::ServerArgs::try_parse_from(exec.split_whitespace())
        .unwrap_or_else(|e| panic!("ExecStart flags do not parse: {e}"));
    assert!(args.audit_log.starts_with("/var/log/prime-server/"));
    assert!(args
        .common
        .admin_listen
        .is_some_and(|a| a.ip().is_loopback()));
    assert!(args.common.max_rate_per_ip.is_some());
    assert!(unit.contains("Type=notify") && unit.contains("WatchdogSec="));
    assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
    assert!(unit.contains("KillSignal=SIGTERM") && unit.contains("Restart=on-failure"));
    assert!(
        unit.contains("LogsDirectory=prime-server"),
        "the audit directory is created for the service"
    );
}
