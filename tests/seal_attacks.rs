//! Issue 20's attacks on audit sealing, each against the real binaries: a
//! hostile operator with root on the machine, and hostile input files for
//! the verifier. Every test here failed on the sealing before issue 20
//! (verify said 0, hung, or ran out of memory; the server kept a key, kept
//! answering unsealed, or shared its state); see
//! docs/audit-integrity.md#what-is-proven for the claim each one backs.

use prime_server::audit::seal::{next_hash, seal_path, Ratchet, Record, VerifyKey, Why};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};
use test_support::io::{ask, reply_for, try_ask, wait_until, IO_TIMEOUT};
use test_support::process::ServerProcess;
use test_support::tools::{have_tool, skip};

/// The key epoch and seal interval of these tests.
const EPOCH: &str = "50ms";
/// Their heartbeat (verify allows two between seals).
const BEAT: &str = "1s";
/// Most memory `prime-audit verify` may use here.
const VERIFY_MEMORY: u64 = 256 << 20;

/// Runs `prime-audit` with `args` under a memory limit; kills it if it
/// runs longer than [`IO_TIMEOUT`]: (exit code, or -1 if killed; stdout and
/// stderr).
fn prime_audit(args: &[&str]) -> (i32, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_prime-audit"));
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setrlimit(2) in the child between fork and exec; no allocation.
    unsafe {
        cmd.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: VERIFY_MEMORY,
                rlim_max: VERIFY_MEMORY,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("run prime-audit");
    let until = Instant::now() + IO_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            let out = child.wait_with_output().expect("output");
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            return (status.code().unwrap_or(-1), text);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return (-1, "prime-audit hung: killed".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// `prime-audit verify --key KEY OPTIONS... LOGS...`.
fn verify(key: &str, options: &[&str], logs: &[&Path]) -> (i32, String) {
    let mut args: Vec<String> = vec!["verify".into(), "--key".into(), key.into()];
    args.extend(options.iter().map(|o| (*o).to_owned()));
    args.extend(logs.iter().map(|p| p.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    prime_audit(&args)
}

/// A fresh sealing state (key epoch [`EPOCH`]): (verification key, state).
fn keygen() -> (String, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir").keep();
    let state = dir.join("seal.state");
    let (code, out) = prime_audit(&[
        "keygen",
        "--state",
        state.to_str().expect("utf-8"),
        "--seal-interval",
        EPOCH,
    ]);
    assert_eq!(code, 0, "{out}");
    let key = out.lines().next().expect("the key line").to_owned();
    assert!(!key.contains(' '), "one token: {key}");
    (key, state)
}

/// The server sealing with `state`, heartbeat [`BEAT`], on `log` (or its
/// own), with `extra` flags.
fn server(state: &Path, log: Option<&Path>, extra: &[&str]) -> ServerProcess {
    let mut args: Vec<String> = vec![
        "--audit-seal".into(),
        state.display().to_string(),
        "--admin-listen".into(),
        "127.0.0.1:0".into(),
    ];
    if !extra.contains(&"--seal-heartbeat") {
        args.extend(["--seal-heartbeat".into(), BEAT.into()]);
    }
    if let Some(log) = log {
        args.extend(["--audit-log".into(), log.display().to_string()]);
    }
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ServerProcess::start(&args)
}

/// Asks `count` numbers from `first` on.
fn answer(server: &ServerProcess, first: u64, count: u64) {
    for n in first..first + count {
        assert_eq!(ask(server.addr, &n.to_string()), reply_for(n));
    }
}

const SEALS: &str = "prime_server_audit_seals_total";
const HEARTBEATS: &str = "prime_server_audit_heartbeat_seals_total";

/// Waits until `more` seals (of metric `name`) were made after now.
fn wait_seals(server: &ServerProcess, name: &str, more: f64) {
    let before = server.metric(name);
    assert!(
        wait_until(IO_TIMEOUT, || server.metric(name) >= before + more),
        "no {more} more {name}"
    );
}

/// Stops the server cleanly (a shutdown seal).
fn stop(server: &mut ServerProcess) {
    server.signal(libc::SIGINT);
    assert_eq!(
        server.wait(IO_TIMEOUT).code(),
        Some(0),
        "{}",
        server.stderr()
    );
}

/// The seal records in a seal file (fingerprint lines left out).
fn seal_records(log: &Path) -> Vec<String> {
    std::fs::read_to_string(seal_path(log))
        .expect("seal file")
        .lines()
        .filter(|l| l.starts_with("seal "))
        .map(str::to_owned)
        .collect()
}

/// Cuts `log` and its seal file back to the seal `keep` (a consistent
/// prefix: the log at that seal's length, the seal file ending with it).
fn cut_back_to(log: &Path, keep: &str) {
    let record = Record::parse(keep).expect("record");
    let bytes = std::fs::read(log).expect("log");
    std::fs::write(log, &bytes[..usize::try_from(record.len).expect("len")]).expect("cut log");
    let text = std::fs::read_to_string(seal_path(log)).expect("seal file");
    let end = text.find(keep).expect("the seal is there") + keep.len() + 1;
    std::fs::write(seal_path(log), &text[..end]).expect("cut seal file");
}

/// A clean run with lines, idle time (heartbeats), a rotation and a clean
/// stop verifies with both files; without the newest, the chain goes on in
/// a file not given.
#[test]
fn a_clean_run_verifies_and_fails_without_its_newest_file() {
    let (key, state) = keygen();
    let mut server = server(&state, None, &[]);
    answer(&server, 2, 4);
    wait_seals(&server, HEARTBEATS, 2.0);
    let log = server.audit_path.clone();
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    server.signal(libc::SIGHUP);
    assert!(wait_until(IO_TIMEOUT, || seal_path(&rotated).exists()));
    answer(&server, 20, 2);
    stop(&mut server);
    let (code, out) = verify(&key, &[], &[&rotated, &log]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 2 files, 6 lines, "), "{out}");
    assert!(out.contains("(ended by a shutdown seal)"), "{out}");
    assert!(out.contains(", validated from "), "{out}");
    let (code, out) = verify(&key, &[], &[&rotated]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the chain goes on in a file not given"),
        "{out}"
    );
}

/// Cut back to an earlier seal, log and seal file together: once that
/// seal is older than two heartbeats, the end is not vouched for.
#[test]
fn attack_a_consistent_prefix_fails_once_its_end_is_old() {
    let (key, state) = keygen();
    let mut server = server(&state, None, &[]);
    answer(&server, 2, 3);
    wait_seals(&server, SEALS, 1.0);
    let early = seal_records(&server.audit_path)
        .into_iter()
        .rfind(|l| l.contains(" why=interval "))
        .expect("an interval seal");
    answer(&server, 10, 3);
    // Idle long enough for the early seal to be old: three heartbeats.
    wait_seals(&server, HEARTBEATS, 3.0);
    stop(&mut server);
    let log = server.audit_path.clone();
    assert_eq!(verify(&key, &[], &[&log]).0, 0);
    cut_back_to(&log, &early);
    let (code, out) = verify(&key, &[], &[&log]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("which is not a shutdown seal"), "{out}");
}

/// The log emptied and its seal file deleted; or only the seal file
/// deleted: nothing is vouched for.
#[test]
fn attack_an_emptied_log_or_a_deleted_seal_file_fails() {
    let (key, state) = keygen();
    let mut server = server(&state, None, &[]);
    answer(&server, 2, 3);
    stop(&mut server);
    let log = server.audit_path.clone();
    let saved = std::fs::read(seal_path(&log)).expect("seal file");
    std::fs::remove_file(seal_path(&log)).expect("rm");
    let (code, out) = verify(&key, &[], &[&log]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("lines 1-3 are not sealed"), "{out}");
    std::fs::write(&log, b"").expect("empty");
    let (code, out) = verify(&key, &[], &[&log]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("no seal at all"), "{out}");
    std::fs::write(seal_path(&log), saved).expect("restore");
    assert_eq!(verify(&key, &[], &[&log]).0, 1, "the log is still empty");
}

/// `kill -9`, then the log rotated while the server is down: the restart
/// seals the old file's tail (late) with its final seal; strict
/// verification names the crash, `--allow-crash` accepts it, and no line is
/// left unsealed.
#[test]
fn attack_a_file_rotated_while_stopped_after_a_crash_is_sealed_at_restart() {
    let (key, state) = keygen();
    let mut first = server(&state, None, &[]);
    answer(&first, 2, 3);
    wait_seals(&first, SEALS, 1.0);
    answer(&first, 10, 2);
    first.signal(libc::SIGKILL);
    first.wait(IO_TIMEOUT);
    let log = first.audit_path.clone();
    let rotated = log.with_extension("log.1");
    std::fs::rename(&log, &rotated).expect("rotate");
    let mut second = server(&state, Some(&log), &[]);
    answer(&second, 20, 2);
    stop(&mut second);
    let (code, out) = verify(&key, &[], &[&rotated, &log]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("without a shutdown seal: a crash"), "{out}");
    let (code, out) = verify(&key, &["--allow-crash"], &[&rotated, &log]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("unsealed tail: none"), "{out}");
    assert!(
        out.contains(&format!(
            "sealed late, at start-up (found on disk, not seen written): {} lines 4-5",
            rotated.display()
        )),
        "{out}"
    );
}

/// With the keys of a stolen state, a seal timed before seal 0, and a seal
/// timed now over invented lines dated in the past, are both refused.
#[test]
fn attack_backdating_with_the_stolen_current_key_fails() {
    let (key, state) = keygen();
    let mut server = server(&state, None, &[]);
    answer(&server, 2, 3);
    stop(&mut server);
    let log = server.audit_path.clone();
    let stolen = std::fs::read_to_string(&state).expect("steal the state");
    let seals = seal_records(&log);
    let honest_log = std::fs::read(&log).expect("log");
    let first = Record::parse(&seals[0]).expect("seal 0");
    let last = Record::parse(seals.last().expect("a seal")).expect("last");
    let schedule = VerifyKey::parse(&key).expect("key").schedule;
    // Lines "from the past": before seal 0.
    let invented = "2020-01-01T00:00:00.000000Z 127.0.0.1:1 T '4' is a prime number\n";
    let before_seal_0 =
        humantime::parse_rfc3339(&first.time).expect("time") - Duration::from_secs(3600);
    for (what, time, why) in [
        ("timed before seal 0", before_seal_0, Why::Interval),
        (
            "timed now, over lines dated 2020",
            SystemTime::now(),
            Why::Interval,
        ),
        ("a restart claimed now", SystemTime::now(), Why::Start),
    ] {
        std::fs::write(&log, [&honest_log[..], invented.as_bytes()].concat()).expect("log");
        let mut keys = Ratchet::from_state_text(&stolen).expect("stolen keys");
        let t_us = prime_server::audit::seal::micros(time);
        let epoch = schedule.epoch_of(t_us).unwrap_or(0);
        // The attacker's best place: the stolen one, if in that epoch.
        let sub = if epoch == keys.epoch() { keys.sub() } else { 0 };
        let mut forged = Record {
            seq: last.seq + 1,
            why,
            time: humantime::format_rfc3339_micros(time).to_string(),
            epoch,
            sub,
            beat_ms: 1000,
            len: last.len + invented.len() as u64,
            lines: last.lines + 1,
            hash: next_hash(&last.hash, invented.as_bytes()),
            prev: sha256(&seals[seals.len() - 1]),
            fp: None,
            ..last.clone()
        };
        let line = forged.to_line();
        let body = line.split(" mac=").next().expect("body");
        // The attacker's best: the key of that place if the stolen keys
        // reach it, else the stolen key itself.
        forged.mac = keys
            .seal_at(epoch, sub, body.as_bytes())
            .unwrap_or_else(|| {
                let (e, s) = (keys.epoch(), keys.sub());
                keys.seal_at(e, s, body.as_bytes()).expect("its own place")
            });
        let mut text = seals.join("\n");
        text.push('\n');
        text.push_str(&forged.to_line());
        text.push('\n');
        std::fs::write(seal_path(&log), text).expect("seal file");
        let (code, out) = verify(&key, &[], &[&log]);
        assert_eq!(code, 1, "{what}: accepted: {out}");
        let refusals = [
            "before the key's first epoch",
            "before seal",
            "was not made with the key",
            "sealed late",
            "found on disk at start-up",
            "follows the shutdown seal",
        ];
        assert!(refusals.iter().any(|r| out.contains(r)), "{what}: {out}");
    }
}

fn sha256(text: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).into()
}

/// A FIFO as the seal file, or a device as the log: refused at once (exit
/// 2), not waited on or read forever.
#[test]
fn attack_a_fifo_or_a_device_given_to_verify_is_refused_at_once() {
    let (key, _) = keygen();
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("a.log");
    std::fs::write(&log, b"").expect("log");
    let fifo = std::ffi::CString::new(seal_path(&log).to_str().expect("utf-8")).expect("c");
    // SAFETY: mkfifo(3) with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    let started = Instant::now();
    let (code, out) = verify(&key, &[], &[&log]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is a FIFO, not a regular file"), "{out}");
    let (code, out) = verify(&key, &[], &[Path::new("/dev/zero")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("is a character device"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// A 1 GiB line, and a 20 MB seal file of newlines: refused at the first
/// line, in bounded memory (the verifier runs under a 256 MiB limit).
#[test]
fn attack_huge_lines_and_junk_seal_files_fail_fast_in_bounded_memory() {
    let (key, _) = keygen();
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("a.log");
    // Sparse: 1 GiB of zero bytes, no newline, taking no disk.
    std::fs::File::create(&log)
        .and_then(|f| f.set_len(1 << 30))
        .expect("sparse log");
    std::fs::write(seal_path(&log), b"").expect("empty seal file");
    let started = Instant::now();
    let (code, out) = verify(&key, &[], &[&log]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("a line longer than 65536 bytes"), "{out}");
    std::fs::write(&log, b"").expect("log");
    std::fs::write(seal_path(&log), vec![b'\n'; 20 << 20]).expect("junk");
    let (code, out) = verify(&key, &[], &[&log]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("seal file line 1: not a seal record"), "{out}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// The state cannot be saved (its temporary name is a directory, which
/// even root cannot write over): `/readyz` says 503 with the reason, the
/// failure counter rises and the gauge is 1; once the fault clears, the
/// sealer's own clock retries and recovers with no request to wake it.
/// With `--seal-fail-closed`, requests fail closed meanwhile.
#[test]
fn attack_an_unwritable_state_turns_readyz_503_and_recovers_by_itself() {
    for fail_closed in [false, true] {
        let (_key, state) = keygen();
        let extra: &[&str] = if fail_closed {
            &["--seal-fail-closed"]
        } else {
            &[]
        };
        let server = server(&state, None, extra);
        answer(&server, 2, 2);
        wait_seals(&server, SEALS, 1.0);
        let blocker = state.with_extension("state.tmp");
        std::fs::create_dir(&blocker).expect("block the state");
        // A line to seal (answered: sealing has not failed yet).
        answer(&server, 10, 1);
        assert!(wait_until(IO_TIMEOUT, || {
            server.metric("prime_server_audit_seal_failures_total") >= 2.0
        }));
        assert_eq!(server.metric("prime_server_audit_sealing_failing"), 1.0);
        let (status, body) = server.admin_get("/readyz");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("sealing the audit log fails"), "{body}");
        if fail_closed {
            assert_eq!(try_ask(server.addr, "11"), None, "answered unsealed");
        }
        std::fs::remove_dir(&blocker).expect("unblock");
        assert!(wait_until(IO_TIMEOUT, || server.admin_get("/readyz").0 == 200));
        assert_eq!(server.metric("prime_server_audit_sealing_failing"), 0.0);
        answer(&server, 12, 1);
    }
}

/// A second server on the same state refuses to start, saying why.
#[test]
fn attack_a_second_server_on_the_same_state_refuses_to_start() {
    let (_key, state) = keygen();
    let first = server(&state, None, &[]);
    let dir = tempfile::tempdir().expect("dir");
    let out = Command::new(env!("CARGO_BIN_EXE_prime-server"))
        .args(["--listen", "127.0.0.1:0", "--audit-seal"])
        .arg(&state)
        .arg("--audit-log")
        .arg(dir.path().join("other.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let status = wait_child(out, IO_TIMEOUT);
    assert!(matches!(status.0, Some(code) if code != 0), "{status:?}");
    assert!(
        status.1.contains("in use by another process"),
        "{}",
        status.1
    );
    answer(&first, 2, 1);
}

/// Waits for `child` (bounded): its exit code (None if killed) and stderr.
fn wait_child(mut child: Child, limit: Duration) -> (Option<i32>, String) {
    let until = Instant::now() + limit;
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            let out = child.wait_with_output().expect("output");
            return (
                out.status.code(),
                String::from_utf8_lossy(&out.stderr).into_owned(),
            );
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            return (None, "still running".into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Idle, the server seals at least once per heartbeat period.
#[test]
fn an_idle_server_seals_a_heartbeat_every_period() {
    let (key, state) = keygen();
    let mut server = server(&state, None, &["--seal-heartbeat", "200ms"]);
    let before = server.metric(HEARTBEATS);
    let started = Instant::now();
    assert!(wait_until(IO_TIMEOUT, || server.metric(HEARTBEATS) >= before + 5.0));
    let took = started.elapsed();
    // Five periods, with room for a loaded machine; never more than one
    // period between two heartbeats is what verify checks (two at most).
    assert!(took < Duration::from_millis(200 * 5 * 3), "{took:?}");
    stop(&mut server);
    let (code, out) = verify(&key, &[], &[&server.audit_path]);
    assert_eq!(code, 0, "{out}");
}

/// After a few seals, no earlier key (epoch, group, seal keys, raw or in
/// hex) is anywhere in the server's memory.
#[test]
fn no_earlier_key_is_left_in_the_servers_memory() {
    let (key, state) = keygen();
    let server = server(&state, None, &["--workers", "2", "--big-tests", "1"]);
    for round in 0..4 {
        answer(&server, 100 * round + 2, 2);
        wait_seals(&server, SEALS, 1.0);
    }
    wait_seals(&server, HEARTBEATS, 1.0);
    let memory = match read_memory(server.child.id()) {
        Some(m) => m,
        None => return skip("cannot read /proc/PID/mem of the server (ptrace restricted)"),
    };
    // The position the state on disk holds; memory is at it or later.
    let text = std::fs::read_to_string(&state).expect("state");
    let position = text
        .lines()
        .find_map(|l| l.strip_prefix("position="))
        .expect("position");
    let (epoch, sub) = position.split_once(' ').expect("two numbers");
    let (epoch, sub): (u64, u64) = (epoch.parse().expect("e"), sub.parse().expect("s"));
    let earlier = earlier_keys(&key, epoch, sub, &seal_records(&server.audit_path));
    assert!(earlier.len() > 20, "{} keys", earlier.len());
    // The search itself finds a key planted in a copy of that memory.
    let mut planted = memory[..memory.len().min(1 << 20)].to_vec();
    planted.extend_from_slice(&earlier[earlier.len() / 2].1);
    planted.extend_from_slice(&[0; 64]);
    assert_eq!(find_any(&planted, &earlier).len(), 1);
    let found = find_any(&memory, &earlier);
    assert!(
        found.is_empty(),
        "earlier keys found in the server's memory (of {} checked): {found:?}",
        earlier.len()
    );
}

/// Every key before position `(epoch, sub)` that can be named: the seed
/// (in the verification key `token`), the first seal key `m_{e,0}` and next
/// epoch key `k_{e+1}` of every earlier epoch, and the seal key `m_{e,s}`
/// of every seal made before it; each raw and as hex.
fn earlier_keys(token: &str, epoch: u64, sub: u64, seals: &[String]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |what: String, key: &[u8]| {
        out.push((format!("{what} (hex)"), hex::encode(key).into_bytes()));
        out.push((what, key.to_vec()));
    };
    let seed_hex = &token[..64];
    add("K_0".into(), &hex::decode(seed_hex).expect("hex"));
    let seed = VerifyKey::parse(token).expect("key").seed;
    let mut r = Ratchet::from_seed(&seed);
    for e in 0..epoch {
        r.advance_to(e);
        add(format!("m_{{{e},0}}"), r.keys().0);
        if e + 1 < epoch {
            add(format!("k_{{{}}}", e + 1), r.keys().1);
        }
    }
    for line in seals {
        let record = Record::parse(line).expect("record");
        if (record.epoch, record.sub) >= (epoch, sub) {
            continue;
        }
        let mut r = Ratchet::from_seed(&seed);
        r.advance_to(record.epoch);
        for _ in 0..record.sub {
            r.seal(b"");
        }
        add(format!("m_{{{},{}}}", record.epoch, record.sub), r.keys().0);
    }
    out
}

/// The readable, writable memory of process `pid`, or None when it cannot
/// be read.
fn read_memory(pid: u32) -> Option<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !perms.starts_with("rw") {
            continue;
        }
        let (a, b) = range.split_once('-')?;
        let (a, b) = (
            u64::from_str_radix(a, 16).ok()?,
            u64::from_str_radix(b, 16).ok()?,
        );
        let mut buf = vec![0u8; usize::try_from(b - a).ok()?];
        if mem.seek(SeekFrom::Start(a)).is_ok() && mem.read_exact(&mut buf).is_ok() {
            out.extend_from_slice(&buf);
        }
    }
    (!out.is_empty()).then_some(out)
}

/// The names of the `needles` (each at least 32 bytes) found in
/// `haystack`: a 4-byte prefix index, then a full compare.
fn find_any(haystack: &[u8], needles: &[(String, Vec<u8>)]) -> Vec<String> {
    let mut by_prefix: std::collections::HashMap<[u8; 4], Vec<usize>> = Default::default();
    let mut two = vec![false; 1 << 16];
    for (i, (_, n)) in needles.iter().enumerate() {
        by_prefix
            .entry([n[0], n[1], n[2], n[3]])
            .or_default()
            .push(i);
        two[usize::from(u16::from_le_bytes([n[0], n[1]]))] = true;
    }
    let mut found = Vec::new();
    for i in 0..haystack.len().saturating_sub(64) {
        if !two[usize::from(u16::from_le_bytes([haystack[i], haystack[i + 1]]))] {
            continue;
        }
        let prefix = [
            haystack[i],
            haystack[i + 1],
            haystack[i + 2],
            haystack[i + 3],
        ];
        for &k in by_prefix.get(&prefix).into_iter().flatten() {
            let (name, n) = &needles[k];
            if haystack[i..].starts_with(n) && !found.contains(name) {
                found.push(name.clone());
            }
        }
    }
    found
}

/// A real rsyslog (the Debian package) receiving on 127.0.0.1 over TCP,
/// with its own configuration and spool in a temporary directory; stopped
/// (its own process only) when dropped.
struct Rsyslog {
    /// The daemon, in the foreground (`-n`).
    child: Child,
    /// Where it listens.
    addr: std::net::SocketAddr,
    /// The file it writes what it receives to.
    file: PathBuf,
    /// Holds the configuration, spool and output.
    _dir: tempfile::TempDir,
}

impl Rsyslog {
    /// Starts rsyslog, or `None` (the test skips, or fails on CI) when it is
    /// not installed.
    fn start() -> Option<Rsyslog> {
        let Some(program) = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
            .into_iter()
            .find(|p| Path::new(p).is_file())
            .filter(|_| have_tool("rsyslogd"))
        else {
            skip("rsyslogd is not installed (make test installs it: scripts/ensure-tools.sh rsyslogd)");
            return None;
        };
        let dir = tempfile::tempdir().expect("dir");
        let spool = dir.path().join("spool");
        std::fs::create_dir(&spool).expect("spool");
        let file = dir.path().join("received.log");
        // A free port: bound, then released for rsyslog.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port")
            .port();
        let config = dir.path().join("rsyslog.conf");
        std::fs::write(
            &config,
            format!(
                "global(workDirectory=\"{}\")\n\
                 module(load=\"imtcp\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"seals\")\n\
                 ruleset(name=\"seals\") {{ action(type=\"omfile\" file=\"{}\") }}\n",
                spool.display(),
                file.display()
            ),
        )
        .expect("config");
        let child = Command::new(program)
            .arg("-n")
            .arg("-f")
            .arg(&config)
            .arg("-i")
            .arg(dir.path().join("rsyslogd.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut rsyslog = Rsyslog {
            child,
            addr,
            file,
            _dir: dir,
        };
        let listening = wait_until(IO_TIMEOUT, || {
            std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        if !listening {
            let _ = rsyslog.child.kill();
            panic!("rsyslogd did not listen on {addr}");
        }
        Some(rsyslog)
    }

    /// What it received so far.
    fn received(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap_or_default()
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every seal reaches a real rsyslog, verbatim; `verify --seals-from` its
/// file then catches what the local files alone cannot: a cut to a
/// consistent prefix, and a rollback to an older copy of log, seal file and
/// state that the server carried on from.
#[test]
fn seals_shipped_to_rsyslog_catch_a_cut_and_a_rollback() {
    let Some(rsyslog) = Rsyslog::start() else {
        return;
    };
    let collector = rsyslog.addr.to_string();
    let shipping = ["--seal-syslog", collector.as_str()];
    let (key, state) = keygen();
    let log = tempfile::tempdir().expect("dir").keep().join("audit.log");
    // Run 1, a clean stop; a copy of everything (the rollback's source).
    let mut run = server(&state, Some(&log), &shipping);
    answer(&run, 2, 3);
    stop(&mut run);
    let old = tempfile::tempdir().expect("dir");
    let files = [log.clone(), seal_path(&log), state.clone()];
    for f in &files {
        std::fs::copy(f, old.path().join(f.file_name().expect("name"))).expect("copy");
    }
    // Run 2: more lines, shipped.
    let mut run = server(&state, Some(&log), &shipping);
    answer(&run, 10, 3);
    wait_seals(&run, SEALS, 1.0);
    answer(&run, 20, 2);
    assert!(run.metric("prime_server_audit_seals_shipped_total") > 0.0);
    assert_eq!(
        run.metric("prime_server_audit_seals_ship_dropped_total"),
        0.0
    );
    stop(&mut run);
    let last = seal_records(&log).pop().expect("a seal");
    assert!(wait_until(IO_TIMEOUT, || rsyslog
        .received()
        .contains(&last)));
    let copy = rsyslog.file.clone();
    let from = ["--seals-from", copy.to_str().expect("utf-8")];
    let (code, out) = verify(&key, &from, &[&log]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("collector's copy: "), "{out}");
    // Every seal was shipped verbatim, in an RFC 5424 message.
    let received = rsyslog.received();
    for record in seal_records(&log) {
        assert!(received.contains(&record), "not shipped: {record}");
    }
    assert!(received.contains("prime-server"), "{received}");

    // The cut: back to the last interval seal. Up to that seal's time the
    // local pair is consistent and verifies; the shipped copy is longer.
    let cut = tempfile::tempdir().expect("dir");
    let cut_log = cut.path().join("audit.log");
    std::fs::copy(&log, &cut_log).expect("copy");
    std::fs::copy(seal_path(&log), seal_path(&cut_log)).expect("copy");
    let interval = seal_records(&log)
        .into_iter()
        .rfind(|l| l.contains(" why=interval "))
        .expect("an interval seal");
    cut_back_to(&cut_log, &interval);
    let until = Record::parse(&interval).expect("record").time;
    let (code, out) = verify(&key, &["--until", &until], &[&cut_log]);
    assert_eq!(code, 0, "the cut is a consistent prefix: {out}");
    let (code, out) = verify(&key, &["--until", &until, from[0], from[1]], &[&cut_log]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("the local files were cut or rolled back"),
        "{out}"
    );

    // The rollback: the old copy restored, the server carries on from it.
    for f in &files {
        std::fs::copy(old.path().join(f.file_name().expect("name")), f).expect("restore");
    }
    let mut run = server(&state, Some(&log), &shipping);
    answer(&run, 40, 2);
    stop(&mut run);
    let last = seal_records(&log).pop().expect("a seal");
    assert!(wait_until(IO_TIMEOUT, || rsyslog
        .received()
        .contains(&last)));
    let (code, out) = verify(&key, &[], &[&log]);
    assert_eq!(code, 0, "locally the rollback is consistent: {out}");
    let (code, out) = verify(&key, &from, &[&log]);
    eprintln!("rollback, with the shipped copy: {out}");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("differs from the copy shipped") || out.contains("rolled back and resumed"),
        "{out}"
    );
}
