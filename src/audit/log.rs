//! The audit trail: one line per answered request, appended to a file that
//! only ever holds whole lines, with the durability the operator chose.
//!
//! Format (see README.md#the-audit-line):
//! `<RFC 3339 UTC time> <peer> <code> <phrase>`.
//!
//! * **Whole lines only.** Every append (the lines of one worker turn) is
//!   one `write` under the writer's lock, to a file opened with `O_APPEND`,
//!   created if missing and never truncated by us except to undo: if a
//!   write fails or is cut short (`ENOSPC`, `EIO`), the bytes it did write
//!   are removed again (`ftruncate` back to the size before it) before the
//!   request is failed. Until that undo succeeds no further line is
//!   written. The caller sends no `T`/`F` for a failed append.
//! * **Failing closed, recovering by itself.** While appends fail the
//!   server keeps running, answers nothing it cannot log, counts every
//!   failure, warns at most every [`WARN_EVERY`], and reports not-ready;
//!   the first append that succeeds again logs an `info` record.
//! * **Durability** ([`SyncPolicy`]): `none` (the line is in the kernel
//!   before the reply: it survives `kill -9`), `interval:DUR` (a background
//!   `fdatasync` every DUR), or `always` (a reply waits for an `fdatasync`
//!   covering its line; concurrent workers share one sync: group commit).
//!   A failed sync fails closed: the requests it covered get no reply, it
//!   is counted, readiness turns 503, and the file is reopened, because
//!   after a failed `fsync` the same descriptor may report later syncs as
//!   successful for data that never reached the disk.
//! * **Rotation** ([`AuditLog::reopen`], on SIGHUP): the old file is synced
//!   and closed and the path opened again (created if missing), under the
//!   writer's lock, so no line is lost, torn or written twice; `logrotate`
//!   can use `create` instead of `copytruncate`. (`copytruncate` still
//!   works: with `O_APPEND` the next line lands at the new end; but it
//!   destroys sealed bytes, so it cannot be used with sealing.)
//! * **Sealing** (`--audit-seal STATE`, see [`crate::audit::seal`]): every
//!   appended byte is hashed under the writer's lock (cheap, no I/O); a
//!   sealing thread, on its own clock, steps the key every epoch, seals
//!   every `--seal-interval` when lines were written, a heartbeat when none
//!   were for `--seal-heartbeat`, at every reopen and at shutdown; it syncs
//!   the log and appends a seal record to `<log>.seal` outside the lock,
//!   and ships the record off the host (`--seal-syslog`). A failed seal is
//!   retried every interval; while sealing fails the log reports not-ready
//!   and, with `--seal-fail-closed`, appends fail closed.

use crate::audit::line::{format_lines, Entry};
use crate::audit::metrics::AuditMetrics;
use crate::audit::policy::SyncPolicy;
use crate::audit::seal::{self, FileId, SealError, Sealed, Sealer, Shipper, Tracker, Why};
use crate::lock::Lock;
use parking_lot::{Condvar, Mutex};
use slog::{error, info, warn, Logger};
use std::fs::{File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};
use thiserror::Error;

/// Least time between two warnings about failing appends.
pub const WARN_EVERY: Duration = Duration::from_secs(10);
/// Why the audit log could not be opened; the server cannot start without it.
#[derive(Debug, Error)]
pub enum AuditError {
    /// The directory that should hold the log could not be created.
    #[error("cannot create the audit log directory {}: {source}", path.display())]
    CreateDir {
        /// The directory we tried to create.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The log file itself could not be opened for appending.
    #[error("cannot open the audit log {} for appending: {source}", path.display())]
    Open {
        /// The file we tried to open.
        path: PathBuf,
        /// What the operating system said.
        source: io::Error,
    },
    /// The background sync or sealing thread could not start.
    #[error("cannot start an audit thread: {0}")]
    Thread(io::Error),
    /// Sealing could not resume from its state file.
    #[error("cannot start sealing the audit log: {0}")]
    Seal(#[from] SealError),
    /// The sealing options do not fit together.
    #[error("cannot seal the audit log: {0}")]
    SealConfig(String),
}

/// Default `--seal-heartbeat`: the longest time without a seal while idle.
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(60);

/// How the audit log is sealed (`--audit-seal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealOptions {
    /// The sealing state file (made by `prime-audit keygen`).
    pub state: PathBuf,
    /// How often new lines are sealed; `None`: every key epoch (the
    /// `--seal-interval` given to `prime-audit keygen`).
    pub interval: Option<Duration>,
    /// The longest time without a seal while nothing is written: a
    /// heartbeat seal comes at least this often (at least `interval`).
    pub heartbeat: Duration,
    /// Where every seal record is shipped (`HOST:PORT`, syslog over TCP).
    pub syslog: Option<String>,
    /// Refuse appends (fail requests closed) while sealing fails.
    pub fail_closed: bool,
}

impl SealOptions {
    /// Sealing with `state`, every key epoch, default heartbeat, nothing
    /// shipped, failing open.
    pub fn new(state: PathBuf) -> SealOptions {
        SealOptions {
            state,
            interval: None,
            heartbeat: DEFAULT_HEARTBEAT,
            syslog: None,
            fail_closed: false,
        }
    }
}

/// Why an append did not make it.
#[derive(Debug, Error)]
pub enum AppendError {
    /// The write failed or was cut short (and was undone).
    #[error("cannot write the audit log: {0}")]
    Write(io::Error),
    /// An earlier short write could not be undone yet; nothing is written
    /// until it is, so the file never holds a torn line.
    #[error("the audit log ends in a partial line that cannot be removed yet: {0}")]
    Undo(io::Error),
    /// The line was written but the `fdatasync` that should cover it
    /// failed (`--audit-sync always`).
    #[error("cannot sync the audit log: {0}")]
    Sync(io::Error),
    /// Sealing fails and `--seal-fail-closed` is set: nothing is written
    /// that cannot be sealed.
    #[error("sealing the audit log fails; nothing is written that cannot be sealed: {0}")]
    Unsealed(String),
}

/// The append-only audit log, shared by every worker.
#[derive(Debug)]
pub struct AuditLog {
    /// Everything the writer, the syncer and readers of health share.
    shared: Arc<Shared>,
    /// The `interval` sync thread and the sealing thread, if any.
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// What the audit threads share.
#[derive(Debug)]
struct Shared {
    /// Where the file is.
    path: PathBuf,
    /// The file and what the writer knows of it.
    writer: Lock<Writer>,
    /// The durability asked for.
    policy: SyncPolicy,
    /// Group commit state for `always`.
    commit: Mutex<Commit>,
    /// Signalled when a group sync finishes.
    committed: Condvar,
    /// Number of the last append that succeeded (appends are numbered from
    /// 1 under the writer's lock).
    written: AtomicU64,
    /// The last append failed (cleared by the next success).
    write_failing: AtomicBool,
    /// The last sync failed (cleared by the next successful one).
    sync_failing: AtomicBool,
    /// The log is closing (the syncer and sealer exit), and a seal is
    /// wanted now (after a reopen).
    control: Mutex<Control>,
    /// Signalled when `control` changes.
    control_signal: Condvar,
    /// The sealing thread's half (seal records, key, state file); only
    /// that thread and the final seal use it.
    sealer: Option<Mutex<Sealer>>,
    /// Ships seal records off the host, if asked to.
    shipper: Option<Mutex<Shipper>>,
    /// Sealing fails: why (cleared by the next seal that succeeds).
    seal_problem: Mutex<Option<String>>,
    /// Whether `seal_problem` is set (read on every append).
    seal_failing: AtomicBool,
    /// Appends fail while sealing fails (`--seal-fail-closed`).
    seal_fail_closed: bool,
    /// When the last seal failure was logged.
    seal_warned: Mutex<Option<Instant>>,
    /// Failure and sync counters.
    metrics: AuditMetrics,
    /// Where failures and recoveries are reported.
    log: Logger,
}

/// The writer's state, under its lock.
#[derive(Debug)]
struct Writer {
    /// The open file (an `Arc` so a sync can run outside the lock).
    file: Arc<File>,
    /// Bytes of a failed write still to remove before any new line.
    undo: Option<Undo>,
    /// Appends that failed since the last warning.
    unreported: u64,
    /// When the last warning about failing appends was logged.
    last_warning: Option<Instant>,
    /// Hashes what is appended, for sealing.
    tracker: Option<Tracker>,
}

impl Writer {
    /// Makes `new`, just opened at the log's path, the file lines go to,
    /// whichever path switched (a SIGHUP reopen, or the reopen after a
    /// failed sync): the seal tracker hears of it (a `reopen` seal for the
    /// same file, a `rotate` seal and a new file of the chain for another),
    /// and a pending undo, recorded against the old file, is dropped.
    ///
    /// # Errors
    ///
    /// The new file's identity or size cannot be read; nothing changed.
    fn switch_to(&mut self, new: File) -> io::Result<()> {
        if let Some(tracker) = self.tracker.as_mut() {
            tracker.reopened(FileId::of(&new)?, new.metadata()?.len());
        }
        self.file = Arc::new(new);
        self.undo = None;
        Ok(())
    }
}

/// What the background threads are told.
#[derive(Debug, Default)]
struct Control {
    /// Exit.
    closing: bool,
    /// Seal now (a reopen ended a file).
    seal_now: bool,
}

/// A short write waiting to be undone.
#[derive(Debug, Clone, Copy)]
struct Undo {
    /// The file's size before the failed write.
    size: u64,
}

/// Group commit for `always`.
#[derive(Debug, Default)]
struct Commit {
    /// Appends up to this number are known durable.
    synced: u64,
    /// Appends up to this number were covered by a failed sync.
    failed: u64,
    /// A sync is running (its leader will wake everyone when done).
    syncing: bool,
}

impl AuditLog {
    /// Opens (creating if needed) the log at `path` and its parent
    /// directory, with `policy`'s durability.
    ///
    /// # Errors
    ///
    /// [`AuditError`] when the directory or file cannot be created or
    /// opened, or the sync thread cannot start.
    pub fn open(
        path: &Path,
        policy: SyncPolicy,
        seal: Option<&SealOptions>,
        metrics: AuditMetrics,
        log: &Logger,
    ) -> Result<AuditLog, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| AuditError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let file = open_append(path).map_err(|source| AuditError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        let interval = seal.map(seal_interval).transpose()?;
        let mut started = Vec::new();
        let (sealer, tracker) = match seal {
            Some(options) => {
                let (sealer, tracker, resumed) =
                    Sealer::open(&options.state, path, SystemTime::now(), options.heartbeat)?;
                info!(log, "sealing the audit log";
                    "state" => %options.state.display(),
                    "interval" => ?interval,
                    "heartbeat" => ?options.heartbeat,
                    "key_epoch" => ?resumed.schedule.epoch(),
                    "stepped_epochs" => resumed.stepped_epochs,
                    "next_seal" => resumed.next_seq,
                    "new_file" => resumed.new_file,
                    "sealed_late_at_start" => resumed.adopted_lines + resumed.retired_lines);
                if resumed.stepped_epochs > 1 {
                    info!(log, "stepped the sealing key over the epochs since the last seal, erasing each";
                        "epochs" => resumed.stepped_epochs);
                }
                started = resumed.sealed;
                (Some(Mutex::new(sealer)), Some(tracker))
            }
            None => (None, None),
        };
        let shipper = match seal.and_then(|s| s.syslog.as_deref()) {
            Some(target) => Some(Mutex::new(
                Shipper::start(target, metrics.ship.clone(), log).map_err(AuditError::Thread)?,
            )),
            None => None,
        };
        let shared = Arc::new(Shared {
            path: path.to_path_buf(),
            writer: Lock::new(Writer {
                file: Arc::new(file),
                undo: None,
                unreported: 0,
                last_warning: None,
                tracker,
            }),
            policy,
            commit: Mutex::new(Commit::default()),
            committed: Condvar::new(),
            written: AtomicU64::new(0),
            write_failing: AtomicBool::new(false),
            sync_failing: AtomicBool::new(false),
            control: Mutex::new(Control::default()),
            control_signal: Condvar::new(),
            sealer,
            shipper,
            seal_problem: Mutex::new(None),
            seal_failing: AtomicBool::new(false),
            seal_fail_closed: seal.is_some_and(|s| s.fail_closed),
            seal_warned: Mutex::new(None),
            metrics,
            log: log.clone(),
        });
        shared.sealed(&started);
        let mut threads = Vec::new();
        if let SyncPolicy::Interval(every) = policy {
            let shared = Arc::clone(&shared);
            threads.push(
                std::thread::Builder::new()
                    .name("audit-sync".into())
                    .spawn(move || shared.sync_every(every))
                    .map_err(AuditError::Thread)?,
            );
        }
        if let (Some(options), Some(every)) = (seal, interval) {
            let shared = Arc::clone(&shared);
            let heartbeat = options.heartbeat;
            threads.push(
                std::thread::Builder::new()
                    .name("audit-seal".into())
                    .spawn(move || shared.seal_every(every, heartbeat))
                    .map_err(AuditError::Thread)?,
            );
        }
        Ok(AuditLog {
            shared,
            threads: Mutex::new(threads),
        })
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The durability in force.
    pub fn policy(&self) -> SyncPolicy {
        self.shared.policy
    }

    /// Why the log is not healthy, if it is not: the last append, the
    /// last sync or the last seal failed. For `/readyz`.
    pub fn problem(&self) -> Option<String> {
        if self.shared.write_failing.load(Ordering::Relaxed) {
            Some("the audit log cannot be written".into())
        } else if self.shared.sync_failing.load(Ordering::Relaxed) {
            Some("the last sync of the audit log failed".into())
        } else if self.shared.seal_failing.load(Ordering::Relaxed) {
            let why = self.shared.seal_problem.lock().clone().unwrap_or_default();
            Some(format!("sealing the audit log fails: {why}"))
        } else {
            None
        }
    }

    /// Appends one record per answer, all stamped with the current time,
    /// in a single write, and makes them as durable as the policy says.
    ///
    /// # Errors
    ///
    /// [`AppendError`]; the caller must then send none of these answers.
    pub fn record_batch<'a, E: Entry + 'a>(
        &self,
        peer: SocketAddr,
        answers: impl IntoIterator<Item = &'a E>,
    ) -> Result<(), AppendError> {
        let lines = format_lines(SystemTime::now(), peer, answers);
        self.append(lines.as_bytes())
    }

    /// Appends whole lines (`bytes` must end in `\n`) in a single write,
    /// then waits for durability if the policy is `always`.
    ///
    /// # Errors
    ///
    /// [`AppendError`].
    pub fn append(&self, bytes: &[u8]) -> Result<(), AppendError> {
        let seq = self.shared.write(bytes)?;
        if self.shared.policy == SyncPolicy::Always {
            self.shared.make_durable(seq)?;
        }
        Ok(())
    }

    /// Flushes the file's data to stable storage (at shutdown, before a
    /// reopen).
    ///
    /// # Errors
    ///
    /// The I/O error of `fdatasync`.
    pub fn sync(&self) -> io::Result<()> {
        let file = Arc::clone(&self.shared.writer.lock().file);
        self.shared.timed_sync(&file)
    }

    /// Reopens the log at its path (after `logrotate` renamed it, say):
    /// the old file is synced and closed, the path is opened again in
    /// append mode, created if missing. Lines being written wait for the
    /// switch; none is lost or torn.
    ///
    /// # Errors
    ///
    /// The path cannot be opened; the old file stays in use.
    pub fn reopen(&self) -> io::Result<()> {
        let mut writer = self.shared.writer.lock();
        let new = open_append(&self.shared.path)?;
        if let Err(e) = self.shared.timed_sync(&writer.file) {
            error!(self.shared.log, "cannot sync the audit log before reopening it"; "error" => %e);
        }
        writer.switch_to(new)?;
        drop(writer);
        self.shared.metrics.reopens.inc();
        self.shared.seal_soon();
        Ok(())
    }

    /// Stops the background threads and, when sealing, seals what is left
    /// (a `shutdown` seal). The log stays usable, unsealed; call it once
    /// serving is over.
    pub fn close(&self) {
        let already = std::mem::replace(&mut self.shared.control.lock().closing, true);
        if already {
            return;
        }
        self.shared.control_signal.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock());
        for thread in threads {
            let _ = thread.join();
        }
        self.shared.seal(Tracker::shutdown);
        if let Some(shipper) = &self.shared.shipper {
            shipper.lock().close(SHIP_AT_EXIT);
        }
    }
}

/// How long the shutdown waits for the collector to take the last seals.
const SHIP_AT_EXIT: Duration = Duration::from_secs(2);

/// The interval new lines are sealed at: the one asked for, or the key
/// epoch; the heartbeat must not be shorter.
fn seal_interval(options: &SealOptions) -> Result<Duration, AuditError> {
    let interval = match options.interval {
        Some(every) => every,
        None => seal::schedule_of(&options.state)?.epoch(),
    };
    if options.heartbeat < interval {
        return Err(AuditError::SealConfig(format!(
            "--seal-heartbeat ({}) must be at least the seal interval ({})",
            humantime::format_duration(options.heartbeat),
            humantime::format_duration(interval)
        )));
    }
    Ok(interval)
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        self.close();
    }
}

impl Shared {
    /// Writes `bytes` whole or not at all; returns the append's number.
    fn write(&self, bytes: &[u8]) -> Result<u64, AppendError> {
        if self.seal_fail_closed && self.seal_failing.load(Ordering::Relaxed) {
            let why = self.seal_problem.lock().clone().unwrap_or_default();
            return Err(AppendError::Unsealed(why));
        }
        let mut writer = self.writer.lock();
        if let Some(undo) = writer.undo {
            if let Err(e) = writer.file.set_len(undo.size) {
                return Err(self.failed(&mut writer, AppendError::Undo(e)));
            }
            writer.undo = None;
        }
        let mut done = 0;
        let failure = loop {
            if done == bytes.len() {
                break None;
            }
            match (&*writer.file).write(&bytes[done..]) {
                Ok(0) => break Some(io::Error::from(ErrorKind::WriteZero)),
                Ok(n) => done += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        if let Some(e) = failure {
            if done > 0 {
                // Remove the partial line: the file ends where it did.
                let undo = writer.file.metadata().map(|m| {
                    m.len()
                        .saturating_sub(u64::try_from(done).unwrap_or(u64::MAX))
                });
                match undo {
                    Ok(size) => {
                        if writer.file.set_len(size).is_err() {
                            writer.undo = Some(Undo { size });
                        }
                    }
                    Err(stat) => {
                        return Err(self.failed(&mut writer, AppendError::Undo(stat)));
                    }
                }
            }
            return Err(self.failed(&mut writer, AppendError::Write(e)));
        }
        if let Some(tracker) = writer.tracker.as_mut() {
            tracker.observe(bytes);
        }
        let seq = self.written.load(Ordering::Relaxed) + 1;
        self.written.store(seq, Ordering::Release);
        if self.write_failing.swap(false, Ordering::Relaxed) {
            info!(self.log, "the audit log is writable again; answering resumes";
                "failed_appends" => writer.unreported);
            writer.unreported = 0;
            writer.last_warning = None;
        }
        Ok(seq)
    }

    /// Notes a failed append and warns, at most every [`WARN_EVERY`].
    fn failed(&self, writer: &mut Writer, error: AppendError) -> AppendError {
        self.write_failing.store(true, Ordering::Relaxed);
        writer.unreported += 1;
        let due = writer
            .last_warning
            .is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if due {
            warn!(self.log, "audit log write failed; answering nothing that cannot be logged";
                "error" => %error, "path" => %self.path.display(),
                "failed_appends" => writer.unreported);
            writer.last_warning = Some(Instant::now());
            writer.unreported = 0;
        }
        error
    }

    /// `fdatasync`, timed and counted.
    fn timed_sync(&self, file: &File) -> io::Result<()> {
        let started = Instant::now();
        let result = file.sync_data();
        self.metrics
            .sync_duration
            .observe(started.elapsed().as_secs_f64());
        match &result {
            Ok(()) => self.sync_failing.store(false, Ordering::Relaxed),
            Err(_) => {
                self.metrics.sync_failures.inc();
                self.sync_failing.store(true, Ordering::Relaxed);
            }
        }
        result
    }

    /// Waits until append `seq` is durable, leading a group sync if none
    /// is running (group commit).
    fn make_durable(&self, seq: u64) -> Result<(), AppendError> {
        let mut commit = self.commit.lock();
        loop {
            if commit.synced >= seq {
                return Ok(());
            }
            if commit.failed >= seq {
                return Err(AppendError::Sync(io::Error::other(
                    "a sync covering this line failed",
                )));
            }
            if commit.syncing {
                self.committed.wait(&mut commit);
                continue;
            }
            commit.syncing = true;
            drop(commit);
            let (target, file) = {
                let writer = self.writer.lock();
                (
                    self.written.load(Ordering::Acquire),
                    Arc::clone(&writer.file),
                )
            };
            let result = self.timed_sync(&file);
            let failed_upto = match &result {
                Ok(()) => None,
                Err(e) => Some(self.after_sync_failure(e)),
            };
            commit = self.commit.lock();
            commit.syncing = false;
            match failed_upto {
                None => commit.synced = commit.synced.max(target),
                Some(upto) => commit.failed = commit.failed.max(upto),
            }
            self.committed.notify_all();
        }
    }

    /// After a failed sync: reopens the file so later syncs are honest, and
    /// returns the last append the failure may have lost.
    fn after_sync_failure(&self, e: &io::Error) -> u64 {
        let mut writer = self.writer.lock();
        let upto = self.written.load(Ordering::Acquire);
        error!(self.log, "audit log sync failed; the requests it covered are not answered";
            "error" => %e, "path" => %self.path.display());
        match open_append(&self.path).and_then(|file| writer.switch_to(file)) {
            Ok(()) => {
                drop(writer);
                self.seal_soon();
            }
            Err(e) => {
                error!(self.log, "cannot reopen the audit log after a failed sync"; "error" => %e);
            }
        }
        upto
    }

    /// Wakes the sealing thread to seal now (a file was switched), when
    /// there is one.
    fn seal_soon(&self) {
        if self.sealer.is_some() {
            self.control.lock().seal_now = true;
            self.control_signal.notify_all();
        }
    }

    /// The `interval` syncer: syncs every `every` while lines were written.
    fn sync_every(&self, every: Duration) {
        let mut synced = 0;
        let mut control = self.control.lock();
        while !control.closing {
            self.control_signal.wait_for(&mut control, every);
            let written = self.written.load(Ordering::Acquire);
            if written == synced {
                continue;
            }
            drop(control);
            let file = Arc::clone(&self.writer.lock().file);
            match self.timed_sync(&file) {
                Ok(()) => synced = written,
                Err(e) => {
                    self.after_sync_failure(&e);
                }
            }
            control = self.control.lock();
        }
    }

    /// The sealing thread, on its own clock: as each key epoch ends it
    /// steps the key (erasing the old one); every `every` it seals the
    /// lines written since the last seal (or retries a failed seal); when
    /// no seal was made for `heartbeat`, a heartbeat seal; at once after a
    /// reopen.
    fn seal_every(&self, every: Duration, heartbeat: Duration) {
        let Some(sealer) = &self.sealer else { return };
        let schedule = sealer.lock().schedule();
        let mut next_tick = Instant::now() + every;
        let mut control = self.control.lock();
        while !control.closing {
            if !control.seal_now {
                // The key steps as its epoch ends, even when nothing is
                // sealed; while sealing fails, the interval's retry is the
                // only seal.
                let now = SystemTime::now();
                let step_in = schedule.next_epoch_start(now).duration_since(now);
                let mut deadline = next_tick.min(Instant::now() + step_in.unwrap_or_default());
                if !self.seal_failing.load(Ordering::Relaxed) {
                    let since = sealer
                        .lock()
                        .last_seal_time()
                        .and_then(|t| SystemTime::now().duration_since(t).ok())
                        .unwrap_or_default();
                    deadline = deadline.min(Instant::now() + heartbeat.saturating_sub(since));
                }
                self.control_signal.wait_until(&mut control, deadline);
            }
            if control.closing {
                break;
            }
            let seal_now = std::mem::take(&mut control.seal_now);
            drop(control);
            // A no-op unless an epoch ended.
            sealer.lock().tick(SystemTime::now());
            let now = Instant::now();
            let tick = now >= next_tick;
            if tick {
                next_tick = after(next_tick, every, now);
            }
            if seal_now || tick {
                self.seal(Tracker::cut);
            }
            let idle_for = sealer
                .lock()
                .last_seal_time()
                .and_then(|t| SystemTime::now().duration_since(t).ok());
            if idle_for.is_none_or(|d| d >= heartbeat) && !self.seal_failing.load(Ordering::Relaxed)
            {
                self.seal(Tracker::beat);
            }
            control = self.control.lock();
        }
    }

    /// Takes cuts with `take` under the writer's lock, then (outside it)
    /// syncs the log so the sealed bytes are on disk, and seals them (or,
    /// with no new cut, retries what a failed seal left).
    fn seal(&self, take: impl FnOnce(&mut Tracker) -> Vec<crate::audit::seal::Cut>) {
        let Some(sealer) = &self.sealer else { return };
        let mut sealer = sealer.lock();
        let (cuts, file) = {
            let mut writer = self.writer.lock();
            let Some(tracker) = writer.tracker.as_mut() else {
                return;
            };
            (take(tracker), Arc::clone(&writer.file))
        };
        if cuts.is_empty() && !sealer.pending() {
            return;
        }
        if !cuts.is_empty() {
            if let Err(e) = self.timed_sync(&file) {
                error!(self.log, "cannot sync the audit log before sealing it"; "error" => %e);
            }
        }
        let started = Instant::now();
        let result = sealer.seal(cuts, SystemTime::now());
        self.metrics
            .seal_duration
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(sealed) => {
                self.sealed(&sealed);
                if self.seal_failing.swap(false, Ordering::Relaxed) {
                    *self.seal_problem.lock() = None;
                    self.metrics.sealing_failing.set(0);
                    info!(self.log, "sealing the audit log works again");
                }
            }
            Err(e) => {
                // The cuts stay queued in the sealer; the next tick retries.
                self.sealed(&sealer.take_made());
                self.metrics.seal_failures.inc();
                self.metrics.sealing_failing.set(1);
                *self.seal_problem.lock() = Some(e.to_string());
                self.seal_failing.store(true, Ordering::Relaxed);
                let mut warned = self.seal_warned.lock();
                if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    error!(self.log, "cannot seal the audit log; retrying every interval"; "error" => %e);
                    *warned = Some(Instant::now());
                }
            }
        }
    }

    /// Counts, logs and ships seals just made.
    fn sealed(&self, sealed: &[Sealed]) {
        self.metrics
            .seals
            .inc_by(u64::try_from(sealed.len()).unwrap_or(u64::MAX));
        for seal in sealed {
            if seal.why == Why::Beat {
                self.metrics.heartbeats.inc();
            }
            if let Some(moved) = &seal.moved_sidecar {
                info!(self.log, "sealed the rotated audit log";
                    "seal" => seal.seq, "sidecar" => %moved.display());
            }
            if let Some(shipper) = &self.shipper {
                shipper.lock().send(&seal.line);
            }
        }
    }
}

/// The next deadline of a clock ticking every `period` after `deadline`
/// passed at `now` (skipping ticks missed while busy).
fn after(deadline: Instant, period: Duration, now: Instant) -> Instant {
    let next = deadline + period;
    if next <= now {
        now + period
    } else {
        next
    }
}

/// Opens `path` for appending, creating it (mode 0644 before umask).
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A logger that drops every record.
    fn discard() -> slog::Logger {
        slog::Logger::root(slog::Discard, slog::o!())
    }

    /// An entry as the prime service makes them.
    struct Answer {
        /// The code letter.
        code: char,
        /// The phrase.
        phrase: &'static str,
    }

    impl Entry for Answer {
        fn code(&self) -> char {
            self.code
        }
        fn phrase(&self) -> &str {
            self.phrase
        }
    }

    fn open(path: &Path, policy: SyncPolicy) -> AuditLog {
        AuditLog::open(path, policy, None, AuditMetrics::default(), &discard()).unwrap()
    }

    /// A logger whose records land in a list the test reads, each as its
    /// message followed by ` key=value` for each of its own fields.
    fn capture() -> (Logger, Arc<std::sync::Mutex<Vec<String>>>) {
        struct Messages(Arc<std::sync::Mutex<Vec<String>>>);
        struct Fields(String);
        impl slog::Serializer for Fields {
            fn emit_arguments(
                &mut self,
                key: slog::Key,
                value: &std::fmt::Arguments<'_>,
            ) -> slog::Result {
                self.0.push_str(&format!(" {key}={value}"));
                Ok(())
            }
        }
        impl slog::Drain for Messages {
            type Ok = ();
            type Err = slog::Never;
            fn log(
                &self,
                record: &slog::Record<'_>,
                _: &slog::OwnedKVList,
            ) -> Result<(), slog::Never> {
                let mut fields = Fields(record.msg().to_string());
                let _ = slog::KV::serialize(&record.kv(), record, &mut fields);
                self.0.lock().unwrap().push(fields.0);
                Ok(())
            }
        }
        let messages = Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = Logger::root(Messages(Arc::clone(&messages)), slog::o!());
        (log, messages)
    }

    /// The captured messages that start with `prefix`.
    fn said(messages: &std::sync::Mutex<Vec<String>>, prefix: &str) -> Vec<String> {
        messages
            .lock()
            .unwrap()
            .iter()
            .filter(|m| m.starts_with(prefix))
            .cloned()
            .collect()
    }

    /// How many captured messages start with `prefix`.
    fn count(messages: &std::sync::Mutex<Vec<String>>, prefix: &str) -> usize {
        said(messages, prefix).len()
    }

    /// `dir/audit.log` as a symbolic link to `target`, so a test can make
    /// the log's writes or syncs fail (`/dev/full`, `/dev/null`) and then
    /// point it at a real file and reopen.
    fn link(dir: &Path, target: &Path) -> PathBuf {
        let path = dir.join("audit.log");
        let _ = std::fs::remove_file(&path);
        std::os::unix::fs::symlink(target, &path).unwrap();
        path
    }

    #[test]
    fn the_log_says_where_it_is_and_its_policy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        for policy in [
            SyncPolicy::None,
            SyncPolicy::Always,
            SyncPolicy::Interval(Duration::from_millis(50)),
        ] {
            let log = open(&path, policy);
            assert_eq!((log.path(), log.policy()), (path.as_path(), policy));
            assert_eq!(log.problem(), None);
        }
    }

    #[test]
    fn a_batch_is_one_line_per_answer_in_one_append() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.log");
        let log = open(&path, SyncPolicy::None);
        let peer: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        let answers = [
            Answer {
                code: 'T',
                phrase: "'17' is a prime number",
            },
            Answer {
                code: 'E',
                phrase: "'4j' is not an integer",
            },
        ];
        log.record_batch(peer, &answers).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].ends_with(" 127.0.0.1:4242 T '17' is a prime number"));
        assert!(lines[1].ends_with(" 127.0.0.1:4242 E '4j' is not an integer"));
        assert_eq!(
            lines[0].split(' ').next(),
            lines[1].split(' ').next(),
            "one time"
        );
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn a_failing_disk_refuses_appends_warns_once_and_recovers_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = link(dir.path(), Path::new("/dev/full"));
        let (logger, messages) = capture();
        let log = AuditLog::open(
            &path,
            SyncPolicy::None,
            None,
            AuditMetrics::default(),
            &logger,
        )
        .unwrap();
        for _ in 0..3 {
            assert!(matches!(log.append(b"x\n"), Err(AppendError::Write(_))));
        }
        assert_eq!(
            log.problem().as_deref(),
            Some("the audit log cannot be written")
        );
        assert_eq!(
            count(&messages, "audit log write failed"),
            1,
            "rate-limited"
        );
        // Space returns: the path now names a real file.
        let file = dir.path().join("real.log");
        link(dir.path(), &file);
        log.reopen().unwrap();
        log.append(b"y\n").unwrap();
        // (Reopening synced the old file, /dev/full, which fails: that
        // stays the problem until a sync succeeds.)
        assert_eq!(
            log.problem().as_deref(),
            Some("the last sync of the audit log failed")
        );
        log.sync().unwrap();
        assert_eq!(log.problem(), None);
        assert_eq!(count(&messages, "the audit log is writable again"), 1);
        // Three failures: the first warned, the two after it are reported
        // with the recovery.
        assert!(
            messages
                .lock()
                .unwrap()
                .iter()
                .any(|m| m.starts_with("the audit log is writable again")
                    && m.contains("failed_appends=2")),
            "{messages:?}"
        );
        log.append(b"z\n").unwrap();
        assert_eq!(count(&messages, "the audit log is writable again"), 1);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "y\nz\n");
    }

    #[test]
    fn a_failed_sync_fails_closed_until_a_sync_succeeds() {
        // /dev/null takes every write and refuses fdatasync (EINVAL).
        let dir = tempfile::tempdir().unwrap();
        let path = link(dir.path(), Path::new("/dev/null"));
        let metrics = AuditMetrics::default();
        let log =
            AuditLog::open(&path, SyncPolicy::Always, None, metrics.clone(), &discard()).unwrap();
        assert!(matches!(log.append(b"x\n"), Err(AppendError::Sync(_))));
        assert!(matches!(log.append(b"y\n"), Err(AppendError::Sync(_))));
        assert_eq!(
            log.problem().as_deref(),
            Some("the last sync of the audit log failed")
        );
        assert_eq!(metrics.sync_failures.get(), 2);
        assert!(log.sync().is_err());
        // A real file behind the path: the failed sync reopened it.
        let file = dir.path().join("real.log");
        link(dir.path(), &file);
        assert!(
            log.sync().is_err(),
            "still the old file until an append reopens"
        );
        assert!(matches!(log.append(b"z\n"), Err(AppendError::Sync(_))));
        log.append(b"w\n").unwrap();
        assert_eq!(log.problem(), None);
        log.sync().unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "w\n");
    }

    #[test]
    fn a_torn_write_that_cannot_be_undone_blocks_every_later_line() {
        // A FIFO stands in for a file whose write is cut short: its reader
        // takes a little and leaves, so the write stops part-way (the rest
        // fails with EPIPE), and a FIFO cannot be truncated, so the undo
        // fails too. Until the undo succeeds nothing more may be written
        // after the partial line; a reopen starts clean.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid NUL-terminated path; mkfifo touches nothing else.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        let reader_path = path.clone();
        let reader = std::thread::spawn(move || {
            let mut fifo = File::open(&reader_path).unwrap();
            let mut some = [0u8; 100];
            std::io::Read::read_exact(&mut fifo, &mut some).unwrap();
        });
        let log = open(&path, SyncPolicy::None);
        let line = [vec![b'7'; 1 << 20], b"\n".to_vec()].concat();
        assert!(matches!(log.append(&line), Err(AppendError::Write(_))));
        reader.join().unwrap();
        assert!(
            matches!(log.append(b"next\n"), Err(AppendError::Undo(_))),
            "a line was written after a torn one"
        );
        assert_eq!(
            log.problem().as_deref(),
            Some("the audit log cannot be written")
        );
        std::fs::remove_file(&path).unwrap();
        log.reopen().unwrap();
        log.append(b"clean\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "clean\n");
    }

    /// Waits (bounded) until `metrics` counts at least `n` seals.
    fn sealed(metrics: &AuditMetrics, n: u64) -> bool {
        let until = Instant::now() + Duration::from_secs(10);
        while metrics.seals.get() < n && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        metrics.seals.get() >= n
    }

    /// An audit line stamped now.
    fn stamped(what: &str) -> String {
        format!(
            "{} 127.0.0.1:1 E '{what}' is not an integer\n",
            humantime::format_rfc3339_micros(SystemTime::now())
        )
    }

    /// Strict verification up to now.
    fn verify_now(
        key: &crate::audit::seal::VerifyKey,
        logs: &[PathBuf],
    ) -> Result<crate::audit::seal::Report, crate::audit::seal::Failure> {
        let options = crate::audit::seal::Options::strict(SystemTime::now());
        crate::audit::seal::verify(key, logs, &options)
    }

    /// A sealed log in `dir` (key epoch = `interval`, heartbeat `beat`):
    /// (log, its metrics, the verification key).
    fn sealed_log_with(
        dir: &Path,
        interval: Duration,
        beat: Duration,
        fail_closed: bool,
    ) -> (AuditLog, AuditMetrics, crate::audit::seal::VerifyKey) {
        let state = dir.join("seal.state");
        let key = crate::audit::seal::keygen(&state, interval, SystemTime::now()).unwrap();
        let options = SealOptions {
            heartbeat: beat,
            fail_closed,
            ..SealOptions::new(state)
        };
        let (log, metrics) = open_sealed(dir, &options, &discard());
        (log, metrics, key)
    }

    /// `dir/audit.log` sealed as `options` say (its state made already),
    /// no sync policy, logging to `logger`: (log, its metrics).
    fn open_sealed(dir: &Path, options: &SealOptions, logger: &Logger) -> (AuditLog, AuditMetrics) {
        let metrics = AuditMetrics::default();
        let log = AuditLog::open(
            &dir.join("audit.log"),
            SyncPolicy::None,
            Some(options),
            metrics.clone(),
            logger,
        )
        .unwrap();
        (log, metrics)
    }

    fn sealed_log(
        dir: &Path,
        interval: Duration,
    ) -> (AuditLog, AuditMetrics, crate::audit::seal::VerifyKey) {
        sealed_log_with(dir, interval, Duration::from_secs(3600), false)
    }

    #[test]
    fn opening_after_missed_epochs_tells_how_many_keys_were_erased() {
        // An hour-long key epoch: a key made 90 minutes ago is one epoch
        // behind (any start after a short stop), one made ten and a half
        // hours ago ten behind, worth telling the operator.
        let hour = Duration::from_secs(3600);
        for (ago, told) in [(hour * 3 / 2, None), (hour * 21 / 2, Some(10))] {
            let dir = tempfile::tempdir().unwrap();
            let state = dir.path().join("seal.state");
            crate::audit::seal::keygen(&state, hour, SystemTime::now() - ago).unwrap();
            let (logger, messages) = capture();
            let options = SealOptions {
                heartbeat: hour,
                ..SealOptions::new(state)
            };
            let (log, _metrics) = open_sealed(dir.path(), &options, &logger);
            log.close();
            let stepped = said(&messages, "stepped the sealing key");
            match told {
                None => assert!(stepped.is_empty(), "{stepped:?}"),
                Some(epochs) => assert!(
                    stepped.len() == 1 && stepped[0].contains(&format!(" epochs={epochs}")),
                    "{stepped:?}"
                ),
            }
        }
    }

    #[test]
    fn new_lines_are_sealed_every_interval_and_at_close() {
        let dir = tempfile::tempdir().unwrap();
        let opened = Instant::now();
        let (log, metrics, key) = sealed_log(dir.path(), Duration::from_millis(200));
        assert_eq!(metrics.seals.get(), 1, "the start seal");
        log.append(stamped("one").as_bytes()).unwrap();
        log.append(stamped("two").as_bytes()).unwrap();
        assert!(sealed(&metrics, 2), "no seal within the interval");
        // Not sooner: the sealer waits out the interval.
        let first = opened.elapsed();
        assert!(
            first >= Duration::from_millis(150),
            "sealed after {first:?}"
        );
        let before_close = metrics.seals.get();
        log.append(stamped("three").as_bytes()).unwrap();
        log.close();
        assert!(
            metrics.seals.get() > before_close,
            "close seals the last lines"
        );
        let report = verify_now(&key, &[dir.path().join("audit.log")]).unwrap();
        assert_eq!(report.lines, 3);
        assert!(
            report.unsealed.is_empty() && report.late.is_empty(),
            "{report:?}"
        );
    }

    #[test]
    fn a_reopen_seals_the_file_it_ends_at_once() {
        // An interval of an hour: only the reopen can cause a seal.
        let dir = tempfile::tempdir().unwrap();
        let (log, metrics, key) = sealed_log(dir.path(), Duration::from_secs(3600));
        let path = dir.path().join("audit.log");
        let rotated = dir.path().join("audit.log.1");
        log.append(stamped("one").as_bytes()).unwrap();
        std::fs::rename(&path, &rotated).unwrap();
        log.reopen().unwrap();
        assert!(sealed(&metrics, 2), "the reopen did not seal");
        log.append(stamped("two").as_bytes()).unwrap();
        log.close();
        let report = verify_now(&key, &[rotated, path]).unwrap();
        assert_eq!((report.files, report.lines), (2, 2));
        assert!(
            report.unsealed.is_empty() && report.late.is_empty(),
            "{report:?}"
        );
    }

    #[test]
    fn the_reopen_after_a_failed_sync_tells_the_seal_chain() {
        // The path is first a link to /dev/null, which refuses fdatasync;
        // then a real file. The failed sync reopens the path, and the seal
        // chain must hear of the new file exactly as on a SIGHUP reopen:
        // with an interval of an hour, only that switch can cause a seal.
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("seal.state");
        crate::audit::seal::keygen(&state, Duration::from_secs(3600), SystemTime::now()).unwrap();
        let path = link(dir.path(), Path::new("/dev/null"));
        let metrics = AuditMetrics::default();
        let options = SealOptions {
            heartbeat: Duration::from_secs(3600),
            ..SealOptions::new(state)
        };
        let log = AuditLog::open(
            &path,
            SyncPolicy::Always,
            Some(&options),
            metrics.clone(),
            &discard(),
        )
        .unwrap();
        let file = dir.path().join("real.log");
        link(dir.path(), &file);
        assert!(matches!(log.append(b"x\n"), Err(AppendError::Sync(_))));
        assert!(
            sealed(&metrics, 2),
            "the switch to another file did not seal"
        );
        // The old file's seals end with `rotate` (its sidecar is set aside
        // as an orphan: /dev/null is not in the log's directory).
        let seals: String = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().contains("audit.log.seal"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        assert!(
            seals.contains(" why=rotate "),
            "the chain did not end the old file: {seals:?}"
        );
        log.append(b"y\n").unwrap();
        log.close();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "y\n");
    }

    /// The state cannot be saved (its temporary name is taken by a
    /// directory, which even root cannot write over): sealing fails, the
    /// log says why (for `/readyz`), the gauge and counter show it, appends
    /// fail closed; the sealer retries on its own clock, with no append to
    /// wake it, and recovers.
    #[test]
    fn a_failing_seal_is_reported_retried_on_its_own_clock_and_can_fail_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (log, metrics, _key) = sealed_log_with(
            dir.path(),
            Duration::from_millis(20),
            Duration::from_secs(3600),
            true,
        );
        let blocker = dir.path().join("seal.state.tmp");
        std::fs::create_dir(&blocker).unwrap();
        log.append(stamped("one").as_bytes()).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while metrics.seal_failures.get() < 2 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(metrics.seal_failures.get() >= 2, "not retried");
        assert_eq!(metrics.sealing_failing.get(), 1);
        let problem = log.problem().unwrap();
        assert!(
            problem.starts_with("sealing the audit log fails: "),
            "{problem}"
        );
        assert!(matches!(
            log.append(stamped("two").as_bytes()),
            Err(AppendError::Unsealed(_))
        ));
        std::fs::remove_dir(&blocker).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while log.problem().is_some() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(log.problem(), None, "no recovery without appends");
        assert_eq!(metrics.sealing_failing.get(), 0);
        log.append(stamped("three").as_bytes()).unwrap();
    }

    #[test]
    fn an_idle_log_gets_a_heartbeat_seal_every_period() {
        let dir = tempfile::tempdir().unwrap();
        let beat = Duration::from_millis(100);
        let (log, metrics, key) =
            sealed_log_with(dir.path(), Duration::from_millis(20), beat, false);
        let started = Instant::now();
        let until = started + Duration::from_secs(10);
        while metrics.heartbeats.get() < 5 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = started.elapsed();
        assert!(metrics.heartbeats.get() >= 5, "too few heartbeats");
        assert!(took < beat * 5 * 3, "5 heartbeats took {took:?}");
        let report = verify_now(&key, &[dir.path().join("audit.log")]).unwrap();
        assert_eq!(report.end, crate::audit::seal::End::Live);
        assert!(report.heartbeats >= 5);
        log.close();
    }

    /// Time on CPU of this process's threads named `audit-seal`, keyed by
    /// thread id (the first field of each thread's `schedstat`, in ns, as
    /// the bench reads it).
    fn seal_thread_cpu() -> std::collections::HashMap<String, Duration> {
        let mut cpu = std::collections::HashMap::new();
        for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
            let read =
                |name: &str| std::fs::read_to_string(task.path().join(name)).unwrap_or_default();
            if read("comm").trim_end() != "audit-seal" {
                continue;
            }
            let on_cpu = read("schedstat")
                .split_whitespace()
                .next()
                .and_then(|ns| ns.parse().ok());
            if let Some(ns) = on_cpu {
                cpu.insert(
                    task.file_name().to_string_lossy().into_owned(),
                    Duration::from_nanos(ns),
                );
            }
        }
        cpu
    }

    #[test]
    fn the_heartbeat_comes_on_time_between_interval_ticks_without_spinning() {
        // Interval ticks at 2 s and 4 s; the heartbeat is due at 3 s. A
        // thread that waited only for ticks would beat at 4 s; one that
        // computed the heartbeat deadline wrongly would spin meanwhile.
        let dir = tempfile::tempdir().unwrap();
        let before = seal_thread_cpu();
        let beat = Duration::from_secs(3);
        let (log, metrics, _key) = sealed_log_with(dir.path(), Duration::from_secs(2), beat, false);
        let started = Instant::now();
        let until = started + Duration::from_secs(10);
        // A new thread names itself once it runs: wait for it.
        let mut ours = Vec::new();
        while ours.is_empty() && Instant::now() < until {
            ours = seal_thread_cpu()
                .into_keys()
                .filter(|tid| !before.contains_key(tid))
                .collect();
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!ours.is_empty(), "no new audit-seal thread");
        while metrics.heartbeats.get() == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        let first = started.elapsed();
        let spent: Duration = seal_thread_cpu()
            .into_iter()
            .filter(|(tid, _)| ours.contains(tid))
            .map(|(_, cpu)| cpu)
            .sum();
        log.close();
        assert!(metrics.heartbeats.get() > 0, "no heartbeat in 10 s");
        assert!(
            first > beat - Duration::from_millis(500) && first < beat + Duration::from_millis(700),
            "first heartbeat after {first:?}, due after {beat:?} (not at the 2 s tick, not at 4 s)"
        );
        assert!(
            spent < Duration::from_millis(500),
            "the idle sealing thread used {spent:?} of CPU in {first:?}"
        );
    }

    #[test]
    fn the_interval_clock_keeps_its_period_and_skips_ticks_missed_while_busy() {
        let start = Instant::now();
        let period = Duration::from_millis(100);
        // Woken a little late: the next tick is a period after the last
        // deadline, not after the wake-up, so the clock does not drift.
        let late = Duration::from_millis(3);
        assert_eq!(after(start, period, start + late), start + period);
        // Busy for more than a period: the missed ticks are skipped, the
        // next is a period from now (not in the past, not a burst).
        assert_eq!(after(start, period, start + period * 3), start + period * 4);
        assert_eq!(after(start, period, start + period), start + period * 2);
    }

    #[test]
    fn lines_wait_for_the_seal_interval_not_for_the_key_epoch() {
        // Keys step every 50 ms, lines are sealed every 1.5 s: the key
        // steps alone must not seal them.
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("seal.state");
        crate::audit::seal::keygen(&state, Duration::from_millis(50), SystemTime::now()).unwrap();
        let options = SealOptions {
            interval: Some(Duration::from_millis(1500)),
            heartbeat: Duration::from_secs(3600),
            ..SealOptions::new(state)
        };
        let (log, metrics) = open_sealed(dir.path(), &options, &discard());
        let opened = Instant::now();
        assert_eq!(metrics.seals.get(), 1, "the start seal");
        log.append(stamped("one").as_bytes()).unwrap();
        assert!(sealed(&metrics, 2), "no seal within the interval");
        let first = opened.elapsed();
        log.close();
        assert!(
            first >= Duration::from_millis(1200),
            "sealed after {first:?}, before the 1.5 s interval"
        );
    }

    #[test]
    fn sealed_lines_are_synced_first() {
        // With no sync policy the only syncs are the sealer's: the bytes a
        // seal covers are on disk before the seal is.
        let dir = tempfile::tempdir().unwrap();
        let (log, metrics, _key) = sealed_log(dir.path(), Duration::from_millis(50));
        let synced = metrics.sync_duration.count();
        log.append(stamped("one").as_bytes()).unwrap();
        assert!(sealed(&metrics, 2), "no seal within the interval");
        assert!(
            metrics.sync_duration.count() > synced,
            "sealed without a sync"
        );
        log.close();
    }

    #[test]
    fn a_seal_that_keeps_failing_is_logged_once_per_warn_period() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("seal.state");
        crate::audit::seal::keygen(&state, Duration::from_millis(20), SystemTime::now()).unwrap();
        let (logger, messages) = capture();
        let options = SealOptions {
            heartbeat: Duration::from_secs(3600),
            ..SealOptions::new(state)
        };
        let (log, metrics) = open_sealed(dir.path(), &options, &logger);
        std::fs::create_dir(dir.path().join("seal.state.tmp")).unwrap();
        log.append(stamped("one").as_bytes()).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while metrics.seal_failures.get() < 5 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(metrics.seal_failures.get() >= 5, "not retried");
        let told = count(&messages, "cannot seal the audit log");
        assert_eq!(told, 1, "five failures in well under {WARN_EVERY:?}");
        drop(log);
    }

    #[test]
    fn close_and_drop_stop_the_background_threads() {
        let dir = tempfile::tempdir().unwrap();
        let log = open(
            &dir.path().join("a.log"),
            SyncPolicy::Interval(Duration::from_millis(1)),
        );
        assert_eq!(Arc::strong_count(&log.shared), 2, "the syncer holds one");
        log.close();
        assert_eq!(Arc::strong_count(&log.shared), 1, "close joined the syncer");
        log.close();
        let log = open(
            &dir.path().join("b.log"),
            SyncPolicy::Interval(Duration::from_millis(1)),
        );
        let shared = Arc::clone(&log.shared);
        drop(log);
        assert_eq!(Arc::strong_count(&shared), 1, "drop joined the syncer");
    }

    #[test]
    fn open_creates_directories_and_appends() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/audit.log");
        let log = open(&path, SyncPolicy::None);
        log.append(b"one\n").unwrap();
        drop(log);
        let log = open(&path, SyncPolicy::Always);
        log.append(b"two\n").unwrap();
        log.sync().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn unopenable_path_is_a_clear_error() {
        let err = AuditLog::open(
            Path::new("/proc/definitely/not/here.log"),
            SyncPolicy::None,
            None,
            AuditMetrics::default(),
            &discard(),
        )
        .unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot create the audit log directory"));
    }

    #[test]
    fn reopen_follows_a_rename_without_losing_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = open(&path, SyncPolicy::None);
        log.append(b"before\n").unwrap();
        std::fs::rename(&path, dir.path().join("audit.log.1")).unwrap();
        log.append(b"renamed\n").unwrap();
        log.reopen().unwrap();
        log.append(b"after\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("audit.log.1")).unwrap(),
            "before\nrenamed\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
    }

    #[test]
    fn always_group_commits_concurrent_appends() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = AuditMetrics::default();
        let log = Arc::new(
            AuditLog::open(
                &dir.path().join("a.log"),
                SyncPolicy::Always,
                None,
                metrics.clone(),
                &discard(),
            )
            .unwrap(),
        );
        std::thread::scope(|s| {
            for t in 0..8 {
                let log = &log;
                s.spawn(move || {
                    for i in 0..50 {
                        log.append(format!("{t} {i}\n").as_bytes()).unwrap();
                    }
                });
            }
        });
        let text = std::fs::read_to_string(dir.path().join("a.log")).unwrap();
        assert_eq!(text.lines().count(), 400);
        let syncs = metrics.sync_duration.count();
        assert!((1..=400).contains(&syncs), "{syncs} syncs");
    }

    #[test]
    fn interval_syncs_in_the_background() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = AuditMetrics::default();
        let log = AuditLog::open(
            &dir.path().join("a.log"),
            SyncPolicy::Interval(Duration::from_millis(5)),
            None,
            metrics.clone(),
            &discard(),
        )
        .unwrap();
        log.append(b"x\n").unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        while metrics.sync_duration.count() == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(metrics.sync_duration.count() >= 1);
        log.close();
    }
}
