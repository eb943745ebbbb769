//! Audit sealing end to end: real audit lines appended to a real file by a
//! writer that drives [`prime_server::audit::seal`] the way the server will (observe
//! under the writer's lock, cut under it, seal outside it), rotation by
//! rename, crashes by stopping without the final seal, and the `prime-audit`
//! binary judging the result: exit codes, and each tampering caught and
//! located by file and line.
//!
//! To run these against the real server instead, replace [`Run`]'s writer
//! by a server started with `--audit-seal`; the tampering and checking
//! helpers ([`Tamper`], [`verify`]) only look at the files.

use prime_server::audit::format_line;

use prime_server::audit::seal::{self, FileId, Key, Ratchet, Record, Sealer, Tracker};
use prime_server::prime::answer;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The writer's side, as the audit writer will hold it: the file and the
/// tracker under one lock.
struct Writer {
    /// The log, opened for appending.
    file: File,
    /// Hashes what is appended.
    tracker: Tracker,
}

/// A sealed audit log being written, in a temporary directory.
struct Run {
    /// Holds the files.
    dir: tempfile::TempDir,
    /// The current log path.
    log: PathBuf,
    /// The sealing state.
    state: PathBuf,
    /// The verification key printed by `prime-audit keygen`.
    key: String,
    /// The writer, under its lock.
    writer: Arc<Mutex<Writer>>,
    /// The sealing thread's half (a test may hand it to its own thread).
    sealer: Option<Sealer>,
    /// Numbers asked so far, to vary the lines.
    asked: u64,
}

/// A fixed, advancing clock for the seal and line times (in the past, so
/// `verify --until now` sees no seal from the future).
fn clock(step: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_795_000_000_000 + step * 250)
}

/// The runs' heartbeat: longer than any run, so their clock makes no gap.
const BEAT: Duration = Duration::from_secs(3600);

fn open_append(path: &Path) -> File {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open the log")
}

/// Runs `prime-audit` with `args` and optional stdin.
fn prime_audit(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prime-audit"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run prime-audit");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    child.wait_with_output().expect("prime-audit ends")
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
    let out = prime_audit(&args, None);
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).expect("utf-8"),
    )
}

impl Run {
    /// `prime-audit keygen`, an empty log, and sealing opened on it.
    fn start() -> Run {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("prime_server.log");
        let state = dir.path().join("seal.state");
        let start = humantime::format_rfc3339_millis(clock(0)).to_string();
        let out = prime_audit(
            &[
                "keygen",
                "--state",
                state.to_str().expect("utf-8"),
                "--seal-interval",
                "250ms",
                "--start",
                &start,
            ],
            None,
        );
        assert!(out.status.success(), "keygen: {out:?}");
        let key = String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_owned();
        // One token: the key, the start, the epoch.
        assert_eq!(key, format!("{}-1795000000000-250", &key[..64]));
        let file = open_append(&log);
        let (sealer, tracker, _) =
            Sealer::open(&state, &log, clock(0), BEAT).expect("open sealing");
        Run {
            dir,
            log,
            state,
            key,
            writer: Arc::new(Mutex::new(Writer { file, tracker })),
            sealer: Some(sealer),
            asked: 0,
        }
    }

    /// Answers `count` numbers, appending one real audit line each.
    fn answer(&mut self, count: u64) {
        for _ in 0..count {
            self.asked += 1;
            let n = 1_000 + self.asked;
            append_answer(&self.writer, n, clock(self.asked));
        }
    }

    /// One periodic seal: cut under the lock, seal outside it.
    fn seal(&mut self) {
        let cuts = self.writer.lock().expect("lock").tracker.cut();
        let now = clock(self.asked);
        self.sealer().seal(cuts, now).expect("interval seal");
    }

    /// The shutdown seal.
    fn shutdown(&mut self) {
        let cuts = self.writer.lock().expect("lock").tracker.shutdown();
        let now = clock(self.asked);
        self.sealer().seal(cuts, now).expect("final seal");
    }

    fn sealer(&mut self) -> &mut Sealer {
        self.sealer.as_mut().expect("the sealer is here")
    }

    /// logrotate: rename the log to `name`, then SIGHUP: reopen under the
    /// lock and seal the boundary.
    fn rotate(&mut self, name: &str) -> PathBuf {
        let rotated = self.dir.path().join(name);
        std::fs::rename(&self.log, &rotated).expect("rename the log");
        {
            let mut w = self.writer.lock().expect("lock");
            w.file = open_append(&self.log);
            let id = FileId::of(&w.file).expect("fstat");
            let size = w.file.metadata().expect("fstat").len();
            w.tracker.reopened(id, size);
        }
        self.seal();
        // The final seal is in, and the seal file sits beside the rotated log.
        assert!(
            seal::seal_path(&rotated).exists(),
            "{} has its seal file at once",
            rotated.display()
        );
        assert!(!seal::seal_path(&self.log).exists());
        rotated
    }

    /// `kill -9` and a restart: nothing more is sealed by the old process;
    /// the new one resumes from the state file.
    fn crash_and_restart(&mut self) -> seal::Resumed {
        let file = open_append(&self.log);
        // The crashed process is gone, and its lock with it.
        self.sealer = None;
        let (sealer, tracker, resumed) =
            Sealer::open(&self.state, &self.log, clock(self.asked), BEAT).expect("resume");
        self.sealer = Some(sealer);
        *self.writer.lock().expect("lock") = Writer { file, tracker };
        resumed
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The audit writer's append: format, write, observe, under the lock.
fn append_answer(writer: &Mutex<Writer>, n: u64, at: SystemTime) {
    let peer: SocketAddr = "127.0.0.1:40000".parse().expect("addr");
    let answer = answer(n.to_string().as_bytes());
    let line = format_line(at, peer, &answer);
    let mut w = writer.lock().expect("lock");
    w.file.write_all(line.as_bytes()).expect("append");
    w.tracker.observe(line.as_bytes());
}

/// Edits to a log or seal file, as an attacker would make them.
struct Tamper;

impl Tamper {
    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(|l| format!("{l}\n"))
            .collect()
    }

    fn write(path: &Path, lines: &[String]) {
        std::fs::write(path, lines.concat()).expect("write");
    }

    /// Applies `edit` to the lines of `path`.
    fn edit(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
        let mut lines = Tamper::lines(path);
        edit(&mut lines);
        Tamper::write(path, &lines);
    }

    /// Applies `edit` to the seal records of the seal file `path` (its
    /// fingerprint lines dropped).
    fn edit_seals(path: &Path, edit: impl FnOnce(&mut Vec<String>)) {
        let mut lines: Vec<String> = Tamper::lines(path)
            .into_iter()
            .filter(|l| l.starts_with("seal "))
            .collect();
        edit(&mut lines);
        Tamper::write(path, &lines);
    }
}

/// The line with its `T` and `F` swapped: one byte changed.
fn flip_verdict(line: &str) -> String {
    if line.contains(" T '") {
        line.replacen(" T '", " F '", 1)
    } else {
        line.replacen(" F '", " T '", 1)
    }
}

/// A run of 12 lines in 5 seals (start, 3 interval, shutdown), copied fresh
/// for each tampering.
fn sealed_run() -> Run {
    let mut run = Run::start();
    for _ in 0..3 {
        run.answer(4);
        run.seal();
    }
    run.shutdown();
    run
}

#[test]
fn a_sealed_run_with_concurrent_writers_verifies() {
    let mut run = Run::start();
    let (to_sealer, sealer_inbox) = mpsc::channel::<bool>();
    let (to_test, sealed) = mpsc::channel::<usize>();
    let writer = Arc::clone(&run.writer);
    let mut sealer = run.sealer.take().expect("sealer");
    // The sealing thread: seals when told (the server's timer), and a final
    // seal when told to stop.
    let sealing = std::thread::spawn(move || {
        let mut step = 0;
        while let Ok(stop) = sealer_inbox.recv() {
            step += 1;
            let cuts = {
                let mut w = writer.lock().expect("lock");
                if stop {
                    w.tracker.shutdown()
                } else {
                    w.tracker.cut()
                }
            };
            let done = sealer.seal(cuts, clock(step)).expect("seal");
            to_test.send(done.len()).expect("report");
            if stop {
                break;
            }
        }
    });
    for round in 0..5u64 {
        let workers: Vec<_> = (0..4u64)
            .map(|t| {
                let writer = Arc::clone(&run.writer);
                std::thread::spawn(move || {
                    for i in 0..25 {
                        // Timed in the round: no later than the seal after.
                        append_answer(&writer, round * 1000 + t * 100 + i, clock(round));
                    }
                })
            })
            .collect();
        // Seal while the workers write: cuts interleave with appends.
        to_sealer.send(false).expect("tell the sealer");
        for w in workers {
            w.join().expect("worker");
        }
        sealed
            .recv_timeout(Duration::from_secs(20))
            .expect("sealed");
    }
    to_sealer.send(true).expect("stop the sealer");
    sealed
        .recv_timeout(Duration::from_secs(20))
        .expect("final seal");
    sealing.join().expect("sealing thread");
    let (code, out) = verify(&run.key, &[&run.log]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 1 file, 500 lines, "), "{out}");
    assert!(out.contains("unsealed tail: none"), "{out}");
}

#[test]
fn each_tampering_is_caught_and_located() {
    let log_name = |run: &Run| run.log.display().to_string();
    type Case = (&'static str, fn(&Run), &'static str, &'static str);
    let cases: [Case; 8] = [
        (
            "one byte of a verdict",
            |r| Tamper::edit(&r.log, |l| l[5] = flip_verdict(&l[5])),
            ":6: ",
            "line changed since seal 2 sealed it",
        ),
        (
            "a line deleted",
            |r| Tamper::edit(&r.log, |l| drop(l.remove(8))),
            ":9: ",
            "a line sealed by seal 3 was removed here",
        ),
        (
            "a line inserted",
            |r| Tamper::edit(&r.log, |l| l.insert(2, l[1].clone())),
            ":3: ",
            "line inserted among lines sealed by seal 1",
        ),
        (
            "the file truncated",
            |r| {
                let bytes = std::fs::read(&r.log).expect("read");
                std::fs::write(&r.log, &bytes[..bytes.len() - 100]).expect("truncate");
            },
            ":11: ",
            "file truncated",
        ),
        (
            "a seal removed",
            |r| Tamper::edit_seals(&seal::seal_path(&r.log), |l| drop(l.remove(1))),
            ":1: ",
            "seal 1 is missing: the next seal found is 2",
        ),
        (
            "seals reordered",
            |r| Tamper::edit_seals(&seal::seal_path(&r.log), |l| l.swap(2, 3)),
            ":5: ",
            "seal 2 is missing: the next seal found is 3",
        ),
        (
            "a seal forged (its line count edited)",
            |r| {
                Tamper::edit_seals(&seal::seal_path(&r.log), |l| {
                    l[2] = l[2].replace(" lines=8 ", " lines=7 ")
                })
            },
            ":5: ",
            "seal 2 was not made with the key for its epoch and place",
        ),
        (
            "the seal file deleted, the log rotated away",
            |r| {
                std::fs::remove_file(seal::seal_path(&r.log)).expect("rm");
                std::fs::write(r.path("next.log"), b"").expect("next");
            },
            ": ",
            "no seal file",
        ),
    ];
    for (what, tamper, at, reason) in cases {
        let run = sealed_run();
        let (code, out) = verify(&run.key, &[&run.log]);
        assert_eq!(code, 0, "before {what}: {out}");
        tamper(&run);
        let next = run.path("next.log");
        let logs: Vec<&Path> = if next.exists() {
            vec![&run.log, &next]
        } else {
            vec![&run.log]
        };
        let (code, out) = verify(&run.key, &logs);
        assert_eq!(code, 1, "{what} not caught: {out}");
        let expected = format!("FAILED: {}{at}", log_name(&run));
        assert!(
            out.starts_with(&expected),
            "{what}: {out} (expected {expected}...)"
        );
        assert!(out.contains(reason), "{what}: {out} (expected {reason})");
    }
}

#[test]
fn a_wrong_key_and_bad_usage_are_told_apart() {
    let run = sealed_run();
    // Another seed, the same schedule.
    let other = Key::generate().expect("random");
    let other_key = seal::VerifyKey {
        seed: other,
        schedule: seal::VerifyKey::parse(&run.key).expect("key").schedule,
    };
    let (code, out) = verify(&other_key.token(), &[&run.log]);
    assert_eq!(code, 1);
    assert!(
        out.contains(":1: seal 0 was not made with the key for its epoch and place"),
        "{out}"
    );
    // The key from stdin, kept out of the process list.
    let log = run.log.display().to_string();
    let out = prime_audit(
        &["verify", "--key", "-", &log],
        Some(&format!("{}\n", run.key)),
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    for args in [
        vec!["verify", "--key", "nothex", log.as_str()],
        vec!["verify", "--key", run.key.as_str()],
        vec!["verify", log.as_str()],
        vec!["frobnicate"],
        vec![],
    ] {
        let out = prime_audit(&args, None);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
    }
    // keygen never overwrites a state.
    let out = prime_audit(
        &["keygen", "--state", run.state.to_str().expect("utf-8")],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing to overwrite"));
}

/// An attacker copies the state file while it holds `k_j` (after seal 2),
/// the server goes on sealing, and later the attacker rewrites a line sealed
/// before `j` and re-seals everything with the key it holds. Every way of
/// doing so is caught at the rewritten line or at the first seal it forged.
#[test]
fn a_stolen_state_cannot_reseal_earlier_history() {
    let mut run = Run::start();
    run.answer(3);
    run.seal();
    run.answer(3);
    run.seal();
    // Stolen after seal 2: it holds the keys for seal 3 (j = 3) onwards.
    let stolen = std::fs::read_to_string(&run.state).expect("copy the state");
    for _ in 0..3 {
        run.answer(3);
        run.seal();
    }
    run.shutdown();
    let honest_file = Tamper::lines(&seal::seal_path(&run.log));
    let honest_seals: Vec<String> = honest_file
        .iter()
        .filter(|l| l.starts_with("seal "))
        .cloned()
        .collect();
    // The seal file up to seal `n` (excluded), fingerprint lines included.
    let kept = |n: usize| -> Vec<String> {
        let mut seals = 0;
        honest_file
            .iter()
            .take_while(|l| {
                seals += usize::from(l.starts_with("seal "));
                seals <= n && !(seals == n && l.starts_with("fp "))
            })
            .cloned()
            .collect()
    };
    let honest_log = Tamper::lines(&run.log);
    // Rewrite line 2 (sealed by seal 1): '1002' is not prime; claim it is.
    let mut forged_log = honest_log.clone();
    forged_log[1] = forged_log[1].replace(
        " F '1002' is not a prime number",
        " T '1002' is a prime number",
    );
    assert_ne!(forged_log[1], honest_log[1]);
    let records: Vec<Record> = honest_seals
        .iter()
        .map(|l| Record::parse(l.trim_end()).expect("record"))
        .collect();

    // Re-seals seals `from..` over the forged log with the stolen keys,
    // numbering them from `number_from`; seals before `from` kept as they
    // are. A seal whose key is behind the stolen one gets the stolen key's
    // MAC (the attacker's best).
    let reseal = |from: usize, number_from: u64| -> Vec<String> {
        let mut keys = Ratchet::from_state_text(&stolen).expect("the state holds keys");
        let mut out: Vec<String> = kept(from);
        let mut hash = [0u8; 32];
        let mut done_lines = 0usize;
        let mut prev = [0u8; 32];
        for (i, r) in records.iter().enumerate() {
            let span = &forged_log[done_lines..r.lines as usize];
            for line in span {
                hash = seal::next_hash(&hash, line.as_bytes());
            }
            done_lines = r.lines as usize;
            if i < from {
                prev = sha2_of(honest_seals[i].trim_end());
                continue;
            }
            let mut forged = Record {
                seq: number_from + (i - from) as u64,
                hash,
                prev,
                fp: None,
                ..r.clone()
            };
            let body = forged.to_line();
            let body = body.split(" mac=").next().expect("body");
            forged.mac = keys
                .seal_at(forged.epoch, forged.sub, body.as_bytes())
                .unwrap_or_else(|| {
                    let (e, s) = (keys.epoch(), keys.sub());
                    keys.seal_at(e, s, body.as_bytes()).expect("its own place")
                });
            let line = forged.to_line();
            prev = sha2_of(&line);
            out.push(format!("{line}\n"));
        }
        out
    };
    Tamper::write(&run.log, &forged_log);
    let attempts = [
        // The stolen keys used as if they were the first, every seal
        // renumbered from 0.
        (
            "all seals re-made from 0",
            reseal(0, 0),
            ":1: seal 0 was not made with the key for its epoch and place",
        ),
        // Honest seals kept up to j, forged ones (with the stolen keys) after.
        (
            "honest seals before j kept",
            reseal(3, 3),
            ":2: line changed since seal 1 sealed it",
        ),
        // Seals before j dropped, the forged chain numbered from j.
        (
            "history dropped, chain from j",
            reseal(0, 3),
            ":1: the chain does not start here",
        ),
    ];
    for (what, seals, expected) in attempts {
        Tamper::write(&seal::seal_path(&run.log), &seals);
        let (code, out) = verify(&run.key, &[&run.log]);
        assert_eq!(code, 1, "{what} accepted: {out}");
        assert!(
            out.contains(expected),
            "{what}: {out} (expected {expected})"
        );
    }
    // The stolen keys do make the seals from j on: re-made over the honest
    // log, they are the honest ones. What stops the attacker is only that
    // the rewritten line lies before j.
    let remade = reseal(3, 3);
    let forged3 = remade
        .iter()
        .filter_map(|l| Record::parse(l.trim_end()).ok())
        .find(|r| r.seq == 3)
        .expect("seal 3 re-made");
    let body = forged3.to_line();
    let body = body.split(" mac=").next().expect("body").to_owned();
    let mut from_seed = Ratchet::from_seed(&seal::VerifyKey::parse(&run.key).expect("key").seed);
    assert!(from_seed.check(forged3.epoch, forged3.sub, body.as_bytes(), &forged3.mac));
    Tamper::write(&run.log, &honest_log);
    Tamper::write(&seal::seal_path(&run.log), &honest_seals);
    assert_eq!(verify(&run.key, &[&run.log]).0, 0);
}

fn sha2_of(text: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes()).into()
}

#[test]
fn kill_9_mid_run_fails_strictly_and_reports_the_unsealed_tail_when_accepted() {
    let mut run = Run::start();
    run.answer(5);
    run.seal();
    run.answer(3);
    // kill -9: the process is gone, the last 3 lines were never sealed.
    let (code, out) = verify(&run.key, &[&run.log]);
    let log = run.log.display().to_string();
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.trim_end(),
        format!("FAILED: {log}:6: lines 6-8 are not sealed: a crash, or seals removed from the end (--allow-unsealed-tail accepts them)")
    );
    let (code, out) = verify_with(&run.key, &["--allow-unsealed-tail"], &[&run.log]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out.trim_end(),
        format!(
            "ok: 1 file, 8 lines, 2 seals (0 heartbeats), validated from {} to {} \
             (END NOT VOUCHED FOR: accepted by --allow-unsealed-tail); \
             UNSEALED (not verified): {log} lines 6-8 (3 lines)",
            humantime::format_rfc3339_micros(clock(0)),
            humantime::format_rfc3339_micros(clock(5))
        )
    );
    // The restarted server seals them at once, and says they came late: a
    // crash, which strict verification refuses and --allow-crash accepts.
    let resumed = run.crash_and_restart();
    assert_eq!(resumed.adopted_lines, 3);
    run.answer(2);
    run.shutdown();
    let (code, out) = verify(&run.key, &[&run.log]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("without a shutdown seal: a crash"), "{out}");
    let (code, out) = verify_with(&run.key, &["--allow-crash"], &[&run.log]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("unsealed tail: none"), "{out}");
    assert!(out.contains("restart after a CRASH at seal 2"), "{out}");
    assert!(
        out.contains(&format!(
            "sealed late, at start-up (found on disk, not seen written): {log} lines 6-8"
        )),
        "{out}"
    );
}

#[test]
fn sealing_across_five_rotations_verifies_as_one_chain() {
    let mut run = Run::start();
    let mut files = Vec::new();
    for day in 1..=5 {
        run.answer(3);
        run.seal();
        run.answer(2);
        files.push(run.rotate(&format!("prime_server.log-2026112{day}")));
    }
    run.answer(4);
    run.shutdown();
    for f in &files {
        assert!(
            seal::seal_path(f).exists(),
            "{} has its seal file",
            f.display()
        );
    }
    files.push(run.log.clone());
    let all: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (code, out) = verify(&run.key, &all);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("ok: 6 files, 29 lines, 12 seals"), "{out}");
    // A rotated file left out breaks the chain where it was.
    let gap: Vec<&Path> = all.iter().copied().filter(|p| *p != all[2]).collect();
    let (code, out) = verify(&run.key, &gap);
    assert_eq!(code, 1);
    assert!(
        out.starts_with(&format!(
            "FAILED: {}:1: seal 5 is missing",
            all[3].display()
        )),
        "{out}"
    );
    // Files given out of order.
    let swapped = [all[0], all[2], all[1], all[3], all[4], all[5]];
    assert_eq!(verify(&run.key, &swapped).0, 1);
}
