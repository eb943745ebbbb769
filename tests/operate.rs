//! What an operator relies on: `/metrics`, `/livez`, `/readyz`, systemd
//! notifications, SIGHUP rotation without loss, and
//! the audit sync modes (ordering checked with strace, failures injected
//! with libfiu). docs/operations.md#running-it and #metrics-and-health;
//! docs/audit-integrity.md#rotation and #durability. Loopback only; every wait
//! is bounded.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use test_support::{
    audit::{audited_answers, parse_audit, read_lines},
    io::{ask, connect, metric, read_to_close, try_ask, under_load, wait_until, IO_TIMEOUT},
    process::ServerProcess,
    tools::{have_tool, skip},
};

const ADMIN: [&str; 2] = ["--admin-listen", "127.0.0.1:0"];

/// The system calls of an `strace -f` trace, one per line, in the order
/// they completed: a call another thread interrupted (`... <unfinished
/// ...>`, later `<... NAME resumed> ...`) is put back together where it
/// resumed, so a line holds the whole call, its arguments and its result.
fn strace_calls(trace: &str) -> Vec<String> {
    let mut unfinished: HashMap<&str, &str> = HashMap::new();
    let mut calls = Vec::new();
    for line in trace.lines() {
        let pid = line.split_whitespace().next().unwrap_or_default();
        if let Some(start) = line.strip_suffix(" <unfinished ...>") {
            unfinished.insert(pid, start);
        } else if let Some(at) = line.find(" resumed>") {
            let start = unfinished.remove(pid).unwrap_or(pid);
            calls.push(format!("{start}{}", &line[at + " resumed>".len()..]));
        } else {
            calls.push(line.to_owned());
        }
    }
    calls
}

/// `args` plus the admin endpoint on an ephemeral port.
fn with_admin<'a>(args: &[&'a str]) -> Vec<&'a str> {
    let mut all = ADMIN.to_vec();
    all.extend_from_slice(args);
    all
}

#[test]
fn metrics_count_what_the_summary_counts() {
    let mut server = ServerProcess::start(&with_admin(&[]));
    for (line, expected) in [("17", "T\n"), ("4", "F\n"), ("9", "F\n"), ("4j", "E\n")] {
        assert_eq!(ask(server.addr, line), expected);
    }
    let (status, text) = server.admin_get("/metrics");
    assert_eq!(status, 200);
    let count = |name: &str| metric(&text, name).unwrap_or_else(|| panic!("no {name}: {text}"));
    assert_eq!(count("prime_server_requests_total{verdict=\"prime\"}"), 1.0);
    assert_eq!(
        count("prime_server_requests_total{verdict=\"not_prime\"}"),
        2.0
    );
    assert_eq!(
        count("prime_server_requests_total{verdict=\"not_integer\"}"),
        1.0
    );
    assert_eq!(count("prime_server_connections_accepted_total"), 4.0);
    assert_eq!(count("prime_server_request_duration_seconds_count"), 4.0);
    assert_eq!(count("prime_server_build_info{version=\"0.1.0\"}"), 1.0);
    assert!(text.ends_with("# EOF\n"));
    // No label carries client input or an address.
    assert!(
        !text.contains("127.0.0.1") && !text.contains("4j"),
        "{text}"
    );
    assert_eq!(server.admin_get("/livez"), (200, "alive\n".into()));
    assert_eq!(server.admin_get("/readyz"), (200, "ready\n".into()));
    assert_eq!(server.admin_get("/nope").0, 404);
    server.signal(libc::SIGINT);
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
    let stderr = server.stderr();
    for field in [
        "prime: 1",
        "not_prime: 2",
        "not_integer: 1",
        "connections: 4",
    ] {
        assert!(stderr.contains(field), "summary lacks {field}: {stderr}");
    }
}

#[test]
fn readyz_turns_503_at_once_on_a_stop() {
    // A heavy test keeps the stop going long enough to look.
    let server = ServerProcess::start(&with_admin(&["--big-tests", "1"]));
    let heavy = ((rug::Integer::from(1) << 11213u32) - 1u32).to_string();
    let mut slow = connect(server.addr);
    slow.write_all(format!("{heavy}\n").as_bytes()).unwrap();
    assert!(wait_until(IO_TIMEOUT, || server
        .metric("prime_server_big_tests_running")
        == 1.0));
    assert_eq!(server.admin_get("/readyz").0, 200);
    server.signal(libc::SIGTERM);
    assert!(
        wait_until(IO_TIMEOUT, || server.admin_get("/readyz")
            == (503, "not ready: stopping\n".into())),
        "readyz did not turn 503"
    );
    // The request in hand is still answered.
    assert_eq!(read_to_close(&mut slow), b"T\n");
}

#[test]
fn sighup_reopens_the_audit_log_under_load_without_losing_a_line() {
    let mut server = ServerProcess::start(&[]);
    let dir = server.audit_path.parent().unwrap().to_path_buf();
    let ((), received) = under_load(server.addr, 4, || {
        for i in 1..=5 {
            assert!(wait_until(IO_TIMEOUT, || !server.audit_lines().is_empty()));
            std::fs::rename(
                &server.audit_path,
                dir.join(format!("prime_server.log.{i}")),
            )
            .unwrap();
            server.signal(libc::SIGHUP);
            assert!(
                wait_until(IO_TIMEOUT, || server.audit_path.exists()),
                "no new log after SIGHUP {i}"
            );
        }
    });
    server.signal(libc::SIGINT);
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
    let mut all = Vec::new();
    for i in 1..=5 {
        let rotated = read_lines(&dir.join(format!("prime_server.log.{i}")));
        assert!(!rotated.is_empty(), "rotation {i} is empty");
        all.extend(rotated);
    }
    all.extend(server.audit_lines());
    let mut seen = HashMap::new();
    for line in &all {
        let record = parse_audit(line);
        assert!(record.phrase.ends_with("prime number"), "torn: {line:?}");
        *seen.entry(line.clone()).or_insert(0) += 1;
    }
    assert!(seen.values().all(|&n| n == 1), "a line was written twice");
    let audited = audited_answers(&all);
    assert_eq!(
        audited.len(),
        received.len(),
        "lines of all files == replies"
    );
    for answer in &received {
        assert!(
            audited.contains(answer),
            "reply {answer:?} has no audit line"
        );
    }
    assert!(server.stderr().matches("SIGHUP: logs reopened").count() == 5);
}

#[test]
fn the_shipped_logrotate_config_rotates_without_loss() {
    if !have_tool("logrotate") {
        return skip("logrotate is not installed (make test installs it with apt-get)");
    }
    let mut server = ServerProcess::start(&[]);
    let dir = server.audit_path.parent().unwrap().to_path_buf();
    // The shipped config, pointed at this server's log and pid.
    let shipped = std::fs::read_to_string("deploy/logrotate.conf").unwrap();
    let config = shipped
        .replace(
            "/var/log/prime-server/prime_server.log",
            &server.audit_path.display().to_string(),
        )
        .replace(
            "systemctl reload prime-server.service",
            &format!("kill -HUP {}", server.child.id()),
        );
    assert!(
        config.contains(&format!("kill -HUP {}", server.child.id())),
        "{config}"
    );
    let conf = dir.join("logrotate.conf");
    std::fs::write(&conf, config).unwrap();
    let state = dir.join("logrotate.state");
    let ((), received) = under_load(server.addr, 4, || {
        assert!(wait_until(IO_TIMEOUT, || !server.audit_lines().is_empty()));
        for _ in 0..3 {
            let out = Command::new(if std::path::Path::new("/usr/sbin/logrotate").exists() {
                "/usr/sbin/logrotate"
            } else {
                "logrotate"
            })
            .args(["--force", "--state"])
            .arg(&state)
            .arg(&conf)
            .output()
            .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(wait_until(IO_TIMEOUT, || server
                .stderr()
                .contains("SIGHUP: logs reopened")));
        }
    });
    server.signal(libc::SIGINT);
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
    let mut all = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".gz") {
            let out = Command::new("gzip").arg("-dc").arg(&path).output().unwrap();
            assert!(out.status.success());
            all.extend(
                String::from_utf8(out.stdout)
                    .unwrap()
                    .lines()
                    .map(str::to_owned),
            );
        } else if name.starts_with("prime_server.log") {
            all.extend(read_lines(&path));
        }
    }
    let audited = audited_answers(&all);
    for answer in &received {
        assert!(
            audited.contains(answer),
            "reply {answer:?} lost in rotation"
        );
    }
    assert_eq!(audited.len(), received.len());
}

/// Attaches `strace -f` with `options` to the running server, writing to
/// `trace`, and waits until it is attached. Attaching to the process
/// (every thread) means signals still go to the server itself and strace
/// ends when it exits. strace writes only once attached, and the server
/// makes no traced call on its own, so ask until the trace shows a reply.
fn attach_strace(server: &ServerProcess, trace: &Path, options: &[&str]) -> std::process::Child {
    let strace = Command::new("strace")
        .args(["-f", "-qq", "-s", "256"])
        .args(options)
        .arg("-o")
        .arg(trace)
        .args(["-p", &server.child.id().to_string()])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(IO_TIMEOUT, || {
            let _ = try_ask(server.addr, "2");
            std::fs::read_to_string(trace).is_ok_and(|t| t.contains("sendto("))
        }),
        "strace did not attach"
    );
    strace
}

#[test]
fn audit_sync_always_syncs_before_each_reply() {
    if !have_tool("strace") {
        return skip("strace is not installed (make test installs it with apt-get)");
    }
    let mut server = ServerProcess::start(&["--audit-sync", "always", "--workers", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    let mut strace = attach_strace(&server, &trace, &["-e", "trace=write,fdatasync,sendto"]);
    let before = std::fs::read_to_string(&trace).unwrap().lines().count();
    // One request at a time, so the trace is a sequence.
    for n in ["17", "4", "19", "21"] {
        assert!(matches!(
            try_ask(server.addr, n).as_deref(),
            Some("T" | "F")
        ));
    }
    server.signal(libc::SIGINT);
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
    let _ = strace.wait();
    let text = std::fs::read_to_string(&trace).unwrap();
    let mut replies = 0;
    let mut audit_written = false;
    let mut synced_since = false;
    let skipped = strace_calls(&text.lines().take(before).collect::<Vec<_>>().join("\n")).len();
    for line in strace_calls(&text).iter().skip(skipped) {
        // An audit line (not a terminal log record on fd 2).
        let audit_write = line.contains("write(")
            && !line.contains("write(2,")
            && (line.contains(" is a prime number\\n")
                || line.contains(" is not a prime number\\n"));
        if audit_write {
            audit_written = true;
            synced_since = false;
        } else if line.contains("fdatasync(") && line.ends_with("= 0") {
            synced_since = true;
        } else if line.contains("sendto(")
            && (line.contains("\"T\\n\"") || line.contains("\"F\\n\""))
        {
            assert!(
                audit_written && synced_since,
                "a reply went out before its sync:\n{text}"
            );
            replies += 1;
            audit_written = false;
            synced_since = false;
        }
    }
    assert_eq!(replies, 4, "{text}");
}

#[test]
fn the_audit_log_is_synced_at_shutdown() {
    // docs/audit-integrity.md#durability: the file is synced at shutdown (with
    // the default --audit-sync none nothing else syncs it).
    if !have_tool("strace") {
        return skip("strace is not installed (make test installs it with apt-get)");
    }
    let mut server = ServerProcess::start(&["--workers", "2"]);
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace");
    // -y names each descriptor's file, so the audit log's calls are known.
    let mut strace = attach_strace(
        &server,
        &trace,
        &["-y", "-e", "trace=write,fdatasync,fsync,sendto"],
    );
    assert_eq!(ask(server.addr, "17"), "T\n");
    server.signal(libc::SIGINT);
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
    let _ = strace.wait();
    let text = std::fs::read_to_string(&trace).unwrap();
    let audit = server.audit_path.display().to_string();
    let calls = strace_calls(&text);
    let on_audit: Vec<&String> = calls
        .iter()
        .filter(|l| l.contains(&format!("<{audit}>")))
        .collect();
    let last_write = on_audit
        .iter()
        .rposition(|l| l.contains("write(") && l.contains("'17' is a prime number"))
        .unwrap_or_else(|| panic!("no audit write for 17 in the trace:\n{text}"));
    assert!(
        on_audit[..last_write].iter().all(|l| !l.contains("sync(")),
        "nothing syncs before the stop with --audit-sync none:\n{text}"
    );
    assert!(
        on_audit[last_write..]
            .iter()
            .any(|l| (l.contains("fdatasync(") || l.contains("fsync(")) && l.ends_with("= 0")),
        "the audit log was not synced after its last line:\n{text}"
    );
}

#[test]
fn a_failed_audit_sync_fails_closed_and_recovers() {
    if !have_tool("fiu-run") || !have_tool("fiu-ctrl") {
        return skip("libfiu (fiu-utils) is not installed (make test installs it with apt-get)");
    }
    let server = ServerProcess::start_with(&with_admin(&["--audit-sync", "always"]), |command| {
        let program = command.get_program().to_owned();
        let args: Vec<_> = command.get_args().map(ToOwned::to_owned).collect();
        *command = Command::new("fiu-run");
        command
            .arg("-x")
            .arg(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
    });
    let pid = server.child.id().to_string();
    let fiu = |command: &str| {
        let out = Command::new("fiu-ctrl")
            .args(["-c", command, &pid])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "fiu-ctrl {command}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert_eq!(ask(server.addr, "17"), "T\n");
    fiu("enable name=posix/io/sync/fdatasync");
    for n in ["19", "23"] {
        assert_eq!(
            try_ask(server.addr, n),
            None,
            "a reply for an unsynced line"
        );
    }
    assert_eq!(server.admin_get("/readyz").0, 503);
    assert!(server.metric("prime_server_audit_sync_failures_total") >= 2.0);
    assert!(server.metric("prime_server_audit_write_failures_total") >= 2.0);
    server.expect_stderr("audit log sync failed", IO_TIMEOUT);
    fiu("disable name=posix/io/sync/fdatasync");
    assert_eq!(ask(server.addr, "29"), "T\n");
    assert_eq!(server.admin_get("/readyz").0, 200);
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let notify = UnixDatagram::bind(&socket_path).unwrap();
    notify.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut server = ServerProcess::start_with(&[], |command| {
        command
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", "200000");
    });
    let mut heard = Vec::new();
    let mut buf = [0u8; 512];
    let mut next = || {
        let n = notify.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    // Both come, in either order: the watchdog thread may ping before
    // the server reports ready, which systemd accepts.
    let has = |heard: &[String], what: &str| heard.iter().any(|m| m.contains(what));
    while !(has(&heard, "WATCHDOG=1") && has(&heard, "READY=1")) {
        heard.push(next());
        assert!(heard.len() < 100, "{heard:?}");
    }
    assert_eq!(ask(server.addr, "17"), "T\n");
    server.signal(libc::SIGTERM);
    while !heard.iter().any(|m| m.contains("STOPPING=1")) {
        heard.push(next());
        assert!(heard.len() < 1000, "{heard:?}");
    }
    assert_eq!(server.wait(IO_TIMEOUT).code(), Some(0));
}
