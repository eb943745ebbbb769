//! Scale-out for real: three `prime-server --proxy-protocol` instances
//! behind a real HAProxy on loopback, configured from `deploy/haproxy.cfg`,
//! loaded from ten client addresses (127.0.0.11-127.0.0.20) through
//! HAProxy while `deploy/rolling-restart.sh` restarts all three, one at a
//! time, on their own ports. Checks: no request failed or went unanswered,
//! every instance (old and new) exits 0, the instances' audit lines are
//! exactly the replies the clients received, and each line names the
//! client's own address and port, never HAProxy's.
//! docs/operations.md#several-instances-behind-haproxy. Skips loudly (fails on
//! CI) without `haproxy` or `socat`, which `make test` installs. Every wait is
//! bounded.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use test_support::{
    audit::{parse_audit, read_lines},
    haproxy,
    io::{try_connect_from, wait_until},
    process::ServerProcess,
    tools::{find_tool, skip},
};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const NAMES: [&str; 3] = ["p1", "p2", "p3"];
/// The clients' source addresses: 127.0.0.11 to 127.0.0.20.
const CLIENT_HOSTS: std::ops::RangeInclusive<u8> = 11..=20;
/// Longest any phase of the test may take.
const PHASE: Duration = Duration::from_secs(40);

/// The instance flags, shared by the first and the restarted processes.
/// Only HAProxy (127.0.0.1) may send a header: the clients, though also on
/// loopback, could not choose their logged address even by connecting
/// directly.
const INSTANCE_FLAGS: [&str; 3] = ["--proxy-protocol", "--trusted-proxies", "127.0.0.1/32"];

/// Stops an instance: SIGTERM, then waits (at most 30 s) until the process
/// is gone, as rolling-restart.sh requires of a stop command.
const STOP_SH: &str = r#"#!/usr/bin/env bash
set -euo pipefail
dir=$(dirname "$0")
pid=$(cat "$dir/$1.pid")
kill -TERM "$pid"
for _ in $(seq 600); do
    kill -0 "$pid" 2>/dev/null || exit 0
    sleep 0.05
done
echo "stop.sh: $1 (pid $pid) still running after 30 s" >&2
exit 1
"#;

/// Starts a new instance on the same address, port, admin port and audit
/// log, with the same flags (`$SCALE_TEST_FLAGS`). A subshell waits for
/// it and writes its exit status to NAME.exit; its pid goes to NAME.pid,
/// its stderr to NAME.stderr.
const START_SH: &str = r#"#!/usr/bin/env bash
set -euo pipefail
dir=$(dirname "$0")
name=$1 addr=$2 port=$3
admin=$(cat "$dir/$name.admin")
rm -f "$dir/$name.pid" "$dir/$name.exit"
(
    # shellcheck disable=SC2086 # the flags are words
    "$SCALE_TEST_SERVER" --listen "$addr:$port" --admin-listen "$admin" \
        $SCALE_TEST_FLAGS --audit-log "$dir/logs/$name.log" 2>"$dir/$name.stderr" &
    pid=$!
    echo "$pid" >"$dir/$name.pid"
    status=0
    wait "$pid" || status=$?
    echo "$status" >"$dir/$name.exit"
) </dev/null >/dev/null 2>&1 &
"#;

/// The HAProxy configuration the test runs: `deploy/haproxy.cfg` itself,
/// with only the addresses changed (the stats socket into `dir`, the
/// frontend onto the inherited listening socket, one `server` line per
/// instance with its admin port for the `/readyz` check) and `maxconn`
/// lowered to fit a container's descriptor limit. Every option the
/// example ships (mode tcp, send-proxy-v2, retries, redispatch, leastconn,
/// the check timings and timeouts) is the one tested.
fn haproxy_config(dir: &Path, servers: &[(&str, SocketAddr, SocketAddr)]) -> String {
    let shipped = std::fs::read_to_string(format!("{ROOT}/deploy/haproxy.cfg"))
        .expect("read deploy/haproxy.cfg");
    // HAProxy wants 2 descriptors per connection and will not start if it
    // cannot raise RLIMIT_NOFILE that far (20000 needs 40034; containers
    // often cap the hard limit at 20000 or less). The test opens a few
    // dozen at once: 1000 fits anywhere.
    let out = haproxy::config(&shipped, &dir.join("haproxy.sock"), 1000, servers)
        .unwrap_or_else(|e| panic!("{e:#}"));
    for option in [
        "mode tcp",
        "send-proxy-v2",
        "retries 3",
        "option redispatch",
        "option httpchk GET /readyz",
        "balance leastconn",
    ] {
        assert!(out.contains(option), "the config lost {option:?}:\n{out}");
    }
    out
}

/// The last health-check result of each server of the backend, by name.
fn check_statuses(socket: &Path) -> HashMap<String, String> {
    haproxy::check_statuses(socket, PHASE).into_iter().collect()
}

/// Runs `deploy/rolling-restart.sh` on the three instances with the
/// test's stop and start scripts, bounded; its exit status and how long it
/// took, or why it could not be run. Never panics (it runs while the load
/// threads do).
fn rolling_restart(dir: &Path, socket: &Path) -> Result<(ExitStatus, Duration), String> {
    let started = Instant::now();
    let script = |name: &str, args: &str| format!("bash {} {args}", dir.join(name).display());
    let file = |name: &str| {
        std::fs::File::create(dir.join(name)).map_err(|e| format!("create {name}: {e}"))
    };
    let mut child = Command::new("bash")
        .arg(format!("{ROOT}/deploy/rolling-restart.sh"))
        .arg("--socket")
        .arg(socket)
        .args([
            "--backend",
            haproxy::BACKEND,
            "--drain-timeout",
            "20",
            "--up-timeout",
            "20",
        ])
        .args(["--stop-cmd", &script("stop.sh", "{name}")])
        .args(["--start-cmd", &script("start.sh", "{name} {addr} {port}")])
        .args(NAMES)
        .env("SCALE_TEST_SERVER", env!("CARGO_BIN_EXE_prime-server"))
        .env("SCALE_TEST_FLAGS", INSTANCE_FLAGS.join(" "))
        .stdin(Stdio::null())
        .stdout(file("restart.out")?)
        .stderr(file("restart.err")?)
        .spawn()
        .map_err(|e| format!("cannot run rolling-restart.sh: {e}"))?;
    let limit = 3 * PHASE;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok((status, started.elapsed())),
            Ok(None) if started.elapsed() < limit => thread::sleep(Duration::from_millis(20)),
            other => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "rolling-restart.sh did not finish within {limit:?}: {other:?}"
                ));
            }
        }
    }
}

/// Whether `n` is prime, by trial division (the load's numbers are small).
fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// What one client request came to.
struct Outcome {
    /// The number sent.
    n: u64,
    /// The client socket's own address: the one the audit line must name.
    client: SocketAddr,
    /// The reply letter, or what went wrong.
    reply: Result<String, String>,
}

/// One request from `source` through HAProxy at `front`.
fn request(source: IpAddr, front: SocketAddr, n: u64) -> Outcome {
    let mut stream = match try_connect_from(source, front) {
        Ok(s) => s,
        Err(e) => {
            return Outcome {
                n,
                client: SocketAddr::new(source, 0),
                reply: Err(format!("connect: {e}")),
            }
        }
    };
    let client = stream.local_addr().expect("local addr");
    let reply = stream
        .write_all(format!("{n}\n").as_bytes())
        .map_err(|e| format!("write: {e}"))
        .and_then(|()| {
            let mut reply = Vec::new();
            stream
                .read_to_end(&mut reply)
                .map_err(|e| format!("read: {e}"))?;
            match reply.as_slice() {
                b"T\n" => Ok("T".to_owned()),
                b"F\n" => Ok("F".to_owned()),
                other => Err(format!("reply {other:?}")),
            }
        });
    Outcome { n, client, reply }
}

/// On a failed test, kills every instance a pid file in the directory
/// still names (restarted ones are not the test's children), so none
/// outlives the test.
struct KillInstancesOnPanic<'a>(&'a Path);

impl Drop for KillInstancesOnPanic<'_> {
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        for name in NAMES {
            let pid = std::fs::read_to_string(self.0.join(format!("{name}.pid")));
            if let Some(pid) = pid.ok().and_then(|p| p.trim().parse::<i32>().ok()) {
                // SAFETY: kill(2) on a pid this test started; no memory involved.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Kills HAProxy when the test ends, however it ends.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn three_instances_behind_haproxy_survive_a_rolling_restart_under_load() {
    let Some(haproxy_bin) = find_tool("haproxy") else {
        skip("haproxy is not installed (make test installs it with apt-get where it can)");
        return;
    };
    if find_tool("socat").is_none() {
        skip("socat is not installed; deploy/rolling-restart.sh needs it (make test installs it)");
        return;
    }
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let d = dir.path();
    let _cleanup = KillInstancesOnPanic(d);
    std::fs::write(d.join("stop.sh"), STOP_SH).expect("write stop.sh");
    std::fs::write(d.join("start.sh"), START_SH).expect("write start.sh");

    // The first generation, on ephemeral ports, each with its own admin
    // port and audit log (which the restarted process appends to).
    let mut first = Vec::new();
    for name in NAMES {
        let audit = d.join(format!("logs/{name}.log"));
        let audit = audit.to_str().expect("UTF-8 temp path");
        let mut args = INSTANCE_FLAGS.to_vec();
        args.extend(["--admin-listen", "127.0.0.1:0", "--audit-log", audit]);
        let server = ServerProcess::start(&args);
        let admin = server.admin.expect("admin endpoint");
        std::fs::write(d.join(format!("{name}.pid")), server.child.id().to_string())
            .expect("write pid");
        std::fs::write(d.join(format!("{name}.admin")), admin.to_string()).expect("write admin");
        first.push((name, server));
    }
    let servers: Vec<_> = first
        .iter()
        .map(|(name, s)| (*name, s.addr, s.admin.expect("admin")))
        .collect();

    let cfg = d.join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(d, &servers)).expect("write haproxy.cfg");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind the frontend");
    let front = listener.local_addr().expect("frontend address");
    let haproxy_log = d.join("haproxy.log");
    let log = std::fs::File::create(&haproxy_log).expect("create the HAProxy log");
    let log_too = log.try_clone().expect("clone the HAProxy log");
    let mut haproxy = KillOnDrop(
        haproxy::spawn(&haproxy_bin, &cfg, &listener, log.into(), log_too.into())
            .expect("spawn haproxy"),
    );
    drop(listener);
    let socket = d.join("haproxy.sock");
    // HAProxy starts with every server up; wait for a real check of each
    // (GET /readyz on its admin port) to have passed.
    let mut exited = None;
    let up = wait_until(PHASE, || {
        exited = haproxy.0.try_wait().ok().flatten();
        let checks = check_statuses(&socket);
        exited.is_some()
            || NAMES
                .iter()
                .all(|n| checks.get(*n).is_some_and(|s| s == "L7OK"))
    });
    assert!(
        up && exited.is_none(),
        "HAProxy did not see all three instances pass a check (HAProxy exited: {exited:?}; \
         checks {:?}):\n{}",
        check_statuses(&socket),
        std::fs::read_to_string(&haproxy_log).unwrap_or_default()
    );
    let ready_at = started.elapsed();

    // Reap the first generation as each process exits, so the stop command
    // sees it gone; note how many audit lines it left.
    let reapers: Vec<_> = first
        .into_iter()
        .map(|(name, mut server)| {
            thread::spawn(move || {
                let status = server.wait(2 * PHASE);
                (name, status, server.audit_lines().len(), server.stderr())
            })
        })
        .collect();

    // Load from ten client addresses until told to stop.
    let stop = AtomicBool::new(false);
    let done = AtomicU64::new(0);
    let (restart, outcomes) = thread::scope(|scope| {
        let clients: Vec<_> = CLIENT_HOSTS
            .map(|host| {
                let (stop, done) = (&stop, &done);
                scope.spawn(move || {
                    let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, host));
                    let mut outcomes = Vec::new();
                    for i in 0..50_000u64 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        outcomes.push(request(source, front, u64::from(host) * 1_000_000 + i));
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    outcomes
                })
            })
            .collect();
        // Nothing in here may panic before the clients are told to stop,
        // or the scope would wait for them for good.
        let progressed =
            |from: u64| wait_until(PHASE, || done.load(Ordering::Relaxed) >= from + 300);
        let restart = if progressed(0) {
            let result = rolling_restart(d, &socket);
            // The load goes on against the new processes for a while.
            let continued = progressed(done.load(Ordering::Relaxed));
            Some((result, continued))
        } else {
            None
        };
        stop.store(true, Ordering::Relaxed);
        let outcomes: Vec<Outcome> = clients
            .into_iter()
            .flat_map(|c| c.join().expect("client thread"))
            .collect();
        (restart, outcomes)
    });
    let read = |file: &str| std::fs::read_to_string(d.join(file)).unwrap_or_default();
    let Some((restart, continued)) = restart else {
        panic!(
            "no load got through HAProxy; its log:\n{}",
            tail(&read("haproxy.log"), 20)
        );
    };
    let (restart, restart_took) = restart.unwrap_or_else(|e| panic!("{e}"));
    assert!(continued, "the load stalled after the restart");
    assert!(
        restart.success(),
        "rolling-restart.sh failed ({restart}):\n{}{}",
        read("restart.out"),
        read("restart.err")
    );
    assert!(
        read("restart.out").contains("restarted 3 server(s)"),
        "{}",
        read("restart.out")
    );

    // Every first-generation process exited 0, and each new one served.
    let mut left_by_first = HashMap::new();
    for reaper in reapers {
        let (name, status, lines, stderr) = reaper.join().expect("reaper");
        assert_eq!(
            status.code(),
            Some(0),
            "{name} (first) exited {status}: {stderr}"
        );
        left_by_first.insert(name, lines);
    }

    // Stop the second generation; each exits 0.
    for name in NAMES {
        let pid_file = d.join(format!("{name}.pid"));
        assert!(
            wait_until(PHASE, || pid_file.exists()),
            "{name}: no pid file"
        );
        let pid: i32 = read(&format!("{name}.pid")).trim().parse().expect("pid");
        // SAFETY: kill(2) on the pid start.sh recorded for its own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "{name}: kill");
    }
    for name in NAMES {
        let exit_file = d.join(format!("{name}.exit"));
        assert!(
            wait_until(PHASE, || !read(&format!("{name}.exit")).is_empty()),
            "{name} (restarted) did not exit: {}",
            read(&format!("{name}.stderr"))
        );
        let status = std::fs::read_to_string(&exit_file).expect("exit status");
        assert_eq!(
            status.trim(),
            "0",
            "{name} (restarted) exit status; stderr:\n{}",
            read(&format!("{name}.stderr"))
        );
    }

    // Zero failed or unanswered requests, and every reply right.
    let failed: Vec<_> = outcomes
        .iter()
        .filter_map(|o| o.reply.as_ref().err().map(|e| (o.n, o.client, e)))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed, e.g. {:?}\nHAProxy log tail:\n{}",
        failed.len(),
        outcomes.len(),
        &failed[..failed.len().min(5)],
        tail(&read("haproxy.log"), 20)
    );
    for o in &outcomes {
        let expected = if is_prime(o.n) { "T" } else { "F" };
        assert_eq!(o.reply.as_deref(), Ok(expected), "reply for {}", o.n);
    }

    // The audit lines of all three logs are exactly the replies, each
    // naming the client socket that asked, never HAProxy.
    let clients: Vec<IpAddr> = CLIENT_HOSTS
        .map(|h| IpAddr::V4(Ipv4Addr::new(127, 0, 0, h)))
        .collect();
    let mut audited = HashMap::new();
    let mut haproxy_lines = 0;
    for name in NAMES {
        let lines = read_lines(&d.join(format!("logs/{name}.log")));
        assert!(
            lines.len() > left_by_first[name],
            "{name}: the restarted process served nothing ({} lines, {} before the restart)",
            lines.len(),
            left_by_first[name]
        );
        for line in lines {
            let record = parse_audit(&line);
            let peer: SocketAddr = record.peer.parse().expect("peer is an address");
            if peer.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST) {
                haproxy_lines += 1;
                continue;
            }
            assert!(clients.contains(&peer.ip()), "not a client address: {line}");
            let n: u64 = record
                .phrase
                .split('\'')
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no number in {line}"));
            let previous = audited.insert(n, (peer, record.code));
            assert!(previous.is_none(), "{n} audited twice");
        }
    }
    assert_eq!(
        haproxy_lines, 0,
        "audit lines naming HAProxy's address (health checks reaching the service port?)"
    );
    assert_eq!(audited.len(), outcomes.len(), "audit lines vs replies");
    for o in &outcomes {
        let reply = o.reply.as_ref().expect("checked above");
        assert_eq!(
            audited.get(&o.n),
            Some(&(o.client, reply.clone())),
            "audit line for {} asked from {}",
            o.n,
            o.client
        );
    }
    eprintln!(
        "scale-out: {} requests from {} addresses through HAProxy, 0 failed; \
         instances checked up after {ready_at:?}, rolling restart of 3 took {restart_took:?}, \
         test {:?}",
        outcomes.len(),
        clients.len(),
        started.elapsed()
    );
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
