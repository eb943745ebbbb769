//! Test rigs shared by the seal modules' unit tests.

use super::chain::Tracker;
use super::files::{read_sidecar, seal_path};
use super::key::Key;
use super::record::{encode_path, Record, Why};
use super::sealer::{Resumed, Sealed, Sealer};
use super::state::keygen;
use super::verify::{verify, Failure, Problem, Report};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A sealed log driven the way the audit writer will drive it.
pub(super) struct Rig {
    pub(super) dir: tempfile::TempDir,
    pub(super) log: PathBuf,
    pub(super) state: PathBuf,
    pub(super) file: File,
    pub(super) tracker: Tracker,
    pub(super) sealer: Sealer,
    pub(super) key0: Key,
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
    pub(super) fn new() -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.log");
        let state = dir.path().join("seal.state");
        let key0 = keygen(&state).unwrap();
        let file = append_open(&log);
        let (sealer, tracker, resumed) = Sealer::open(&state, &log, at(0)).unwrap();
        assert_eq!(resumed.next_seq, 0);
        Rig {
            dir,
            log,
            state,
            file,
            tracker,
            sealer,
            key0,
            n: 0,
        }
    }

    pub(super) fn write(&mut self, count: u64) {
        for _ in 0..count {
            self.n += 1;
            let line = format!(
                "2026-11-23T19:14:17.{:06}Z 127.0.0.1:4{:04} T '{}' is a prime number\n",
                self.n, self.n, self.n
            );
            self.file.write_all(line.as_bytes()).unwrap();
            self.tracker.observe(line.as_bytes());
        }
    }

    pub(super) fn seal(&mut self) -> Vec<Sealed> {
        let cuts = self.tracker.cut();
        self.sealer.seal(cuts, at(self.n)).unwrap()
    }

    pub(super) fn shutdown(&mut self) {
        let cuts = self.tracker.shutdown();
        self.sealer.seal(cuts, at(self.n)).unwrap();
    }

    /// Simulates `kill -9` and a restart.
    pub(super) fn restart(&mut self) -> Resumed {
        let (sealer, tracker, resumed) = Sealer::open(&self.state, &self.log, at(self.n)).unwrap();
        self.sealer = sealer;
        self.tracker = tracker;
        self.file = append_open(&self.log);
        resumed
    }

    pub(super) fn verify(&self) -> Result<Report, Failure> {
        verify(&self.key0, std::slice::from_ref(&self.log))
    }

    pub(super) fn seal_lines(&self) -> Vec<String> {
        read_sidecar(&seal_path(&self.log)).unwrap().unwrap().0
    }

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
        file: encode_path(Path::new("/var/log/prime server/a.log")),
        skip: 0,
        len: 140,
        lines: 2,
        hash: [0xab; 32],
        prev: [0x01; 32],
        fps: Some(vec![0xdeadbeef, 7]),
        mac: [0x5a; 32],
    }
}
