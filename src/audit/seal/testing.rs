//! Test rigs shared by the seal modules' unit tests.

use super::chain::Tracker;
use super::files::seal_path;
use super::key::VerifyKey;
use super::record::{encode_path, Record, Why};
use super::sealer::{Resumed, Sealed, Sealer};
use super::state::keygen;
use super::verify::{verify, Failure, Options, Problem, Report};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The rig's key epoch.
pub(super) const EPOCH: Duration = Duration::from_secs(1);
/// The rig's heartbeat: long, so that the rig's clock (a second per line)
/// never makes a gap.
pub(super) const BEAT: Duration = Duration::from_secs(3600);

/// A sealed log driven the way the audit writer will drive it, on a clock
/// that moves a second per line written.
pub(super) struct Rig {
    pub(super) dir: tempfile::TempDir,
    pub(super) log: PathBuf,
    pub(super) state: PathBuf,
    pub(super) file: File,
    pub(super) tracker: Tracker,
    pub(super) sealer: Option<Sealer>,
    pub(super) key: VerifyKey,
    pub(super) n: u64,
}

pub(super) fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_790_000_000 + secs)
}

pub(super) fn append_open(path: &Path) -> File {
    OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap()
}

impl Rig {
    /// A fresh state and log; the start seal is seal 0.
    pub(super) fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let state = dir.path().join("seal.state");
        let key = keygen(&state, EPOCH, at(0)).unwrap();
        let file = append_open(&log);
        let (sealer, tracker, resumed) = Sealer::open(&state, &log, at(0), BEAT).unwrap();
        assert_eq!(resumed.next_seq, 1);
        Rig {
            dir,
            log,
            state,
            file,
            tracker,
            sealer: Some(sealer),
            key,
            n: 0,
        }
    }

    pub(super) fn sealer(&mut self) -> &mut Sealer {
        self.sealer.as_mut().expect("sealing")
    }

    /// Appends `count` audit lines, each a second after the last.
    pub(super) fn write(&mut self, count: u64) {
        for _ in 0..count {
            self.n += 1;
            let line = format!(
                "{} 127.0.0.1:4{:04} T '{}' is a prime number\n",
                humantime::format_rfc3339_micros(at(self.n)),
                self.n,
                self.n
            );
            self.file.write_all(line.as_bytes()).unwrap();
            self.tracker.observe(line.as_bytes());
        }
    }

    pub(super) fn seal(&mut self) -> Vec<Sealed> {
        let cuts = self.tracker.cut();
        let now = at(self.n);
        self.sealer().seal(cuts, now).unwrap()
    }

    pub(super) fn shutdown(&mut self) {
        let cuts = self.tracker.shutdown();
        let now = at(self.n);
        self.sealer().seal(cuts, now).unwrap();
    }

    /// Simulates `kill -9` (the sealer is gone, its lock released) and a
    /// restart.
    pub(super) fn restart(&mut self) -> Resumed {
        self.sealer = None;
        let (sealer, tracker, resumed) =
            Sealer::open(&self.state, &self.log, at(self.n), BEAT).unwrap();
        self.sealer = Some(sealer);
        self.tracker = tracker;
        self.file = append_open(&self.log);
        resumed
    }

    /// Strict verification of the current log, up to the rig's clock.
    pub(super) fn verify(&self) -> Result<Report, Failure> {
        self.verify_with(&self.options(), std::slice::from_ref(&self.log))
    }

    /// Strict options, up to the rig's clock.
    pub(super) fn options(&self) -> Options {
        Options::strict(at(self.n))
    }

    pub(super) fn verify_with(
        &self,
        options: &Options,
        logs: &[PathBuf],
    ) -> Result<Report, Failure> {
        verify(&self.key, logs, options)
    }

    /// The seal records of the current log's sidecar (fingerprint lines
    /// left out).
    pub(super) fn seal_lines(&self) -> Vec<String> {
        std::fs::read_to_string(seal_path(&self.log))
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("seal "))
            .map(str::to_owned)
            .collect()
    }

    /// Replaces the sidecar by these records (no fingerprint lines).
    pub(super) fn set_seal_lines(&self, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(seal_path(&self.log), text).unwrap();
    }

    pub(super) fn log_lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .map(|l| format!("{l}\n"))
            .collect()
    }

    pub(super) fn set_log_lines(&self, lines: &[String]) {
        std::fs::write(&self.log, lines.concat()).unwrap();
    }
}

pub(super) fn problem(result: Result<Report, Failure>) -> (u64, Problem) {
    let failure = result.expect_err("tampering must be caught");
    (failure.line, failure.problem)
}

pub(super) fn sample_record() -> Record {
    Record {
        seq: 7,
        fileno: 2,
        why: Why::Rotate,
        time: "2026-11-23T19:14:18.000123Z".into(),
        epoch: 40,
        sub: 1,
        beat_ms: 60_000,
        file: encode_path(Path::new("/var/log/prime server/a.log")),
        skip: 0,
        len: 140,
        lines: 2,
        hash: [0xab; 32],
        prev: [0x01; 32],
        fp: Some([0x03; 32]),
        mac: [0x5a; 32],
    }
}
