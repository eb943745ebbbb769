//! Audit sealing against the real server: `prime-audit keygen`, then
//! `prime-server --audit-seal`, then `prime-audit verify` on what it wrote,
//! untouched and tampered with; `kill -9`; five SIGHUP rotations; and an
//! attacker holding a copy of the sealing state.
//! docs/audit-integrity.md#sealing.
//! (tests/audit_seal.rs drives the same machinery as a library, with every
//! rule of the format.)

use prime_server::audit::seal::{seal_path, Sealer};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use test_support::{
    io::{ask, reply_for, wait_until, IO_TIMEOUT},
    process::ServerProcess,
};

/// Runs `prime-audit` with `args`.
fn prime_audit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_prime-audit"))
        .args(args)
        .output()
        .expect("run prime-audit")
}

/// `prime-audit verify --key KEY LOGS...`: (exit code, stdout).
fn verify(key: &str, logs: &[&Path]) -> (i32, String) {
    verify_with(key, &[], logs)
}

/// `prime-audit verify --key KEY OPTIONS... LOGS...`: (exit code, stdout).
fn verify_with(key: &str, options: &[&str], logs: &[&Path]) -> (i32, String) {
    let mut args = vec!["verify", "--key", key];
    args.extend_from_slice(options);
    let logs: Vec<String> = logs.iter().map(|p| p.display().to_string()).collect();
    args.extend(logs.iter().map(String::as_str));
    let out = prime_audit(&args);
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// A sealed server: its key and state, and the server itself.
struct Sealed {
    /// The verification key `keygen` printed.
    key: String,
    /// The sealing state file.
    state: PathBuf,
    /// The server.
    server: ServerProcess,
}

impl Sealed {
    /// `keygen`, then the server with `--audit-seal` and a short interval.
    fn start() -> Sealed {
        Sealed::start_every("50ms", "1s")
    }

    /// `keygen` with a key epoch of `interval`, then the server with
    /// `--audit-seal` sealing every `interval`, a heartbeat every `beat`.
    fn start_every(interval: &str, beat: &str) -> Sealed {
        let keys = tempfile::tempdir().unwrap().keep();
        let state = keys.join("seal.state");
        let out = prime_audit(&[
            "keygen",
            "--state",
            state.to_str().unwrap(),
            "--seal-interval",
            interval,
        ]);
        assert!(out.status.success(), "{out:?}");
        let key = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let server = ServerProcess::start(&[
            "--audit-seal",
            state.to_str().unwrap(),
            "--seal-heartbeat",
            beat,
            "--admin-listen",
            "127.0.0.1:0",
        ]);
        Sealed { key, state, server }
    }

    /// Asks `count` numbers from `first` on, waiting for each answer.
    fn answer(&self, first: u64, count: u64) {
        for n in first..first + count {
            assert_eq!(ask(self.server.addr, &n.to_string()), reply_for(n));
        }
    }

    /// Waits until a seal covers every line written so far.
    fn wait_sealed(&self) {
        let lines = self.server.audit_lines().len();
        let seals = self.server.metric("prime_server_audit_seals_total");
        assert!(
            wait_until(IO_TIMEOUT, || self
                .server
                .metric("prime_server_audit_seals_total")
                > seals),
            "no seal after {lines} lines"
        );
    }

    /// Stops the server gracefully (a final seal); returns its key and log
    /// (the files live as long as `self`).
    fn stop(&mut self) -> (String, PathBuf) {
        self.server.signal(libc::SIGINT);
        assert_eq!(self.server.wait(IO_TIMEOUT).code(), Some(0));
        (self.key.clone(), self.server.audit_path.clone())
    }
}

/// A copy of `log` and its seal file in a fresh directory, to tamper with.
fn copy(log: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("prime_server.log");
    std::fs::copy(log, &copy).unwrap();
    std::fs::copy(seal_path(log), seal_path(&copy)).unwrap();
    (dir, copy)
}

/// The lines of a file, each with its newline.
fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn a_sealed_run_verifies_and_every_tampering_is_caught_and_located() {
    let mut sealed = Sealed::start();
    sealed.answer(2, 6);
    sealed.wait_sealed();
    sealed.answer(100, 6);
    let (key, log) = sealed.stop();
    let (code, out) = verify(&key, &[&log]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 1 file, 12 lines, "), "{out}");
    assert!(out.contains("unsealed tail: none"), "{out}");

    let located = |out: &str, path: &Path, line: usize| {
        out.starts_with(&format!("FAILED: {}:{line}: ", path.display()))
    };
    // One byte of a verdict changed.
    let (_dir, c) = copy(&log);
    let mut l = lines(&c);
    assert!(l[4].contains(" F '6'"), "{l:?}");
    l[4] = l[4].replacen(" F '6'", " T '6'", 1);
    std::fs::write(&c, l.concat()).unwrap();
    let (code, out) = verify(&key, &[&c]);
    assert_eq!(code, 1, "{out}");
    assert!(located(&out, &c, 5), "{out}");
    // A line deleted.
    let (_dir, c) = copy(&log);
    let mut l = lines(&c);
    l.remove(8);
    std::fs::write(&c, l.concat()).unwrap();
    let (code, out) = verify(&key, &[&c]);
    assert_eq!(code, 1, "{out}");
    assert!(located(&out, &c, 9), "{out}");
    // A line inserted.
    let (_dir, c) = copy(&log);
    let mut l = lines(&c);
    let forged = l[1].clone();
    l.insert(2, forged);
    std::fs::write(&c, l.concat()).unwrap();
    let (code, out) = verify(&key, &[&c]);
    assert_eq!(code, 1, "{out}");
    assert!(located(&out, &c, 3), "{out}");
    // The file truncated.
    let (_dir, c) = copy(&log);
    let l = lines(&c);
    std::fs::write(&c, l[..10].concat()).unwrap();
    let (code, out) = verify(&key, &[&c]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("truncated"), "{out}");
    // A seal removed.
    let (_dir, c) = copy(&log);
    let mut seals = lines(&seal_path(&c));
    assert!(seals.len() >= 2, "{seals:?}");
    seals.remove(0);
    std::fs::write(seal_path(&c), seals.concat()).unwrap();
    let (code, out) = verify(&key, &[&c]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("seal 0 is missing"), "{out}");
}

#[test]
fn a_stolen_state_cannot_reseal_an_earlier_line() {
    let mut sealed = Sealed::start();
    sealed.answer(2, 5);
    sealed.wait_sealed();
    // The attacker copies the state file now (it holds the key for the
    // next seal, and the chain so far)...
    let stolen = tempfile::tempdir().unwrap();
    let stolen_state = stolen.path().join("seal.state");
    std::fs::copy(&sealed.state, &stolen_state).unwrap();
    let seals_then = lines(&seal_path(&sealed.server.audit_path)).len();
    sealed.answer(50, 5);
    let (key, log) = sealed.stop();
    // ...and later rewrites an earlier verdict, keeps the seals it cannot
    // make, drops the rest, and re-seals the file from there with its key.
    let mut l = lines(&log);
    assert!(l[1].contains(" T '3'"), "{l:?}");
    l[1] = l[1].replacen(" T '3'", " F '3'", 1);
    std::fs::write(&log, l.concat()).unwrap();
    let seals = lines(&seal_path(&log));
    std::fs::write(seal_path(&log), seals[..seals_then].concat()).unwrap();
    let beat = std::time::Duration::from_secs(1);
    match Sealer::open(&stolen_state, &log, std::time::SystemTime::now(), beat) {
        Ok((mut sealer, mut tracker, _)) => {
            let cuts = tracker.shutdown();
            let _ = sealer.seal(cuts, std::time::SystemTime::now());
        }
        Err(e) => eprintln!("the stolen state refused to re-seal: {e}"),
    }
    let (code, out) = verify(&key, &[&log]);
    assert_eq!(code, 1, "the rewrite went unnoticed: {out}");
    assert!(
        out.starts_with(&format!("FAILED: {}:2: ", log.display())),
        "the rewritten line is named: {out}"
    );
}

#[test]
fn kill_9_fails_verification_and_reports_the_unsealed_tail() {
    // Seals only when told (SIGHUP seals what was written), so the tail
    // after the last seal is known.
    let mut sealed = Sealed::start_every("1h", "1h");
    sealed.answer(2, 5);
    let seals = sealed.server.metric("prime_server_audit_seals_total");
    sealed.server.signal(libc::SIGHUP);
    assert!(wait_until(IO_TIMEOUT, || sealed
        .server
        .metric("prime_server_audit_seals_total")
        > seals));
    sealed.answer(10, 3);
    sealed.server.signal(libc::SIGKILL);
    sealed.server.wait(IO_TIMEOUT);
    let log = sealed.server.audit_path.clone();
    let (code, out) = verify(&sealed.key, &[&log]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with(&format!(
            "FAILED: {}:6: lines 6-8 are not sealed",
            log.display()
        )),
        "{out}"
    );
    let (code, out) = verify_with(&sealed.key, &["--allow-unsealed-tail"], &[&log]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 1 file, 8 lines, "), "{out}");
    assert!(
        out.ends_with(&format!(
            "UNSEALED (not verified): {} lines 6-8 (3 lines)\n",
            log.display()
        )),
        "{out}"
    );
}

#[test]
fn sealing_across_five_sighup_rotations_verifies_as_one_chain() {
    let mut sealed = Sealed::start();
    let dir = sealed.server.audit_path.parent().unwrap().to_path_buf();
    let mut files = Vec::new();
    for day in 1..=5u64 {
        sealed.answer(day * 100, 3);
        let rotated = dir.join(format!("prime_server.log-2026112{day}"));
        std::fs::rename(&sealed.server.audit_path, &rotated).unwrap();
        let reopens = sealed.server.metric("prime_server_audit_reopens_total");
        sealed.server.signal(libc::SIGHUP);
        assert!(wait_until(IO_TIMEOUT, || {
            sealed.server.metric("prime_server_audit_reopens_total") > reopens
                && seal_path(&rotated).exists()
        }));
        files.push(rotated);
    }
    sealed.answer(900, 2);
    sealed.server.signal(libc::SIGINT);
    assert_eq!(sealed.server.wait(IO_TIMEOUT).code(), Some(0));
    files.push(sealed.server.audit_path.clone());
    let all: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (code, out) = verify(&sealed.key, &all);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 6 files, 17 lines, "), "{out}");
    // Leaving a rotated file out breaks the chain.
    let gap: Vec<&Path> = all.iter().copied().filter(|p| *p != all[2]).collect();
    assert_eq!(verify(&sealed.key, &gap).0, 1);
}
