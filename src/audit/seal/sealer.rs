//! The sealing-thread half: turns cuts into seal records, saves the
//! evolved key, appends to the sidecar, moves sidecars at rotation.

use super::chain::{Cut, Segment, Tracker};
use super::error::{io_err, SealError};
use super::files::{dir_of, find_by_id, read_sidecar, seal_path, sync_dir, FileId};
use super::key::{sha256, Hash32, Key, ZERO};
use super::record::{encode_path, Record, Why, MAX_FP_LINES};
use super::state::State;
use std::collections::VecDeque;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

/// What one call of [`Sealer::seal`] sealed, for the server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The seal's number.
    pub seq: u64,
    /// The file number in the chain.
    pub fileno: u64,
    /// Why it was made.
    pub why: Why,
    /// Lines of the file it covers, from the file's start.
    pub lines: u64,
    /// Where the finished file's sidecar was moved, after a `rotate` seal.
    pub moved_sidecar: Option<PathBuf>,
}

/// What [`Sealer::open`] found and did, for the server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// The number the next seal will have.
    pub next_seq: u64,
    /// The log is a different file than the last one sealed (rotated while
    /// stopped, or the first file of a new chain).
    pub new_file: bool,
    /// Lines found after the last seal, now sealed with `why=start`.
    pub adopted_lines: u64,
    /// A seal record saved in the state but missing from the sidecar (a
    /// crash mid-seal) was appended.
    pub repaired_sidecar: bool,
    /// Where the previous file's sidecar was moved, if it was.
    pub moved_sidecar: Option<PathBuf>,
}

/// An open sidecar.
struct Sidecar {
    /// Opened for appending.
    file: File,
    /// Its path when opened (may have been renamed since).
    path: PathBuf,
    /// Its identity, saved in the state to find it after a rename.
    id: FileId,
}

/// The sealing-thread half: makes seal records, persists the ratchet.
pub struct Sealer {
    /// The state file.
    state_path: PathBuf,
    /// `k_{next_seq}`; the only copy in memory.
    key: Key,
    /// The next seal's number.
    next_seq: u64,
    /// SHA-256 of the last seal line.
    prev: Hash32,
    /// The file of the last seal.
    seg: Option<Arc<Segment>>,
    /// Where the sealer appends.
    sidecar: Option<Sidecar>,
    /// A record saved in the state but not yet in the sidecar.
    unwritten: Option<String>,
    /// Cuts not yet sealed (after an error, retried on the next call).
    queue: VecDeque<Cut>,
    /// The next cut number expected.
    next_cut: u64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("state_path", &self.state_path)
            .field("next_seq", &self.next_seq)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Resumes sealing from the state at `state_path` for the audit log at
    /// `log_path`, which must exist (open the audit log first) and must not
    /// be written until this returns. Completes a seal a crash interrupted,
    /// seals (`why=start`) any lines after the last seal, and returns the
    /// sealer (for the sealing thread) and the tracker (for the writer).
    ///
    /// # Errors
    ///
    /// [`SealError`]: state missing, unreadable, too permissive or corrupt;
    /// the log truncated below its seals; the sidecar not matching the
    /// state; I/O errors.
    pub fn open(
        state_path: &Path,
        log_path: &Path,
        now: SystemTime,
    ) -> Result<(Sealer, Tracker, Resumed), SealError> {
        let state = State::load(state_path)?;
        let mut resumed = Resumed {
            next_seq: 0,
            new_file: false,
            adopted_lines: 0,
            repaired_sidecar: false,
            moved_sidecar: None,
        };
        let mut sealer = Sealer {
            state_path: state_path.to_path_buf(),
            key: state.key,
            next_seq: state.next_seq,
            prev: state.prev,
            seg: state.seg.map(Arc::new),
            sidecar: None,
            unwritten: None,
            queue: VecDeque::new(),
            next_cut: 0,
        };
        if let (Some(last), Some(id), Some(seg)) = (state.last, state.sidecar, sealer.seg.clone()) {
            resumed.repaired_sidecar = sealer.settle(&seg, id, &last)?;
        }
        let mut log = File::open(log_path).map_err(io_err("open the audit log", log_path))?;
        let at = Position {
            len: state.len,
            lines: state.lines,
            hash: state.hash,
        };
        let mut tracker = sealer.resume_tracker(&log, log_path, at, &mut resumed)?;
        adopt(&mut log, log_path, &mut tracker)?;
        if tracker.has_new_lines() {
            resumed.adopted_lines = tracker.lines - tracker.cut_lines;
            let cut = tracker.take_cut(Why::Start);
            sealer.seal(vec![cut], now)?;
        }
        resumed.next_seq = sealer.next_seq;
        Ok((sealer, tracker, resumed))
    }

    /// The tracker for the log now at `log_path`: carrying on in the file
    /// last sealed from where the state says it stood (`at`), or starting
    /// the next file of the chain when the log is another file (its old
    /// sidecar retired beside it).
    fn resume_tracker(
        &mut self,
        log: &File,
        log_path: &Path,
        at: Position,
        resumed: &mut Resumed,
    ) -> Result<Tracker, SealError> {
        let log_id = FileId::of(log).map_err(io_err("stat the audit log", log_path))?;
        let size = log
            .metadata()
            .map_err(io_err("stat the audit log", log_path))?
            .len();
        let same_file = self
            .seg
            .clone()
            .filter(|s| s.path == log_path && s.id == log_id);
        if let Some(seg) = same_file {
            if size < at.len {
                return Err(SealError::LogTruncated {
                    path: log_path.to_path_buf(),
                    size,
                    sealed: at.len,
                });
            }
            return Ok(Tracker::new(seg, at.len, at.lines, at.hash, 0));
        }
        resumed.new_file = true;
        if let Some(old) = self.seg.clone() {
            self.sidecar = None;
            resumed.moved_sidecar = retire_sidecar(&old, log_path)?;
        }
        let seg = Arc::new(Segment {
            fileno: self.seg.as_ref().map_or(0, |s| s.fileno + 1),
            path: log_path.to_path_buf(),
            id: log_id,
            skip: 0,
        });
        Ok(Tracker::new(seg, 0, 0, at.hash, 0))
    }

    /// Makes sure the sidecar ends with `last` (the record the state says
    /// was made last), appending it if a crash kept it out, and opens it.
    fn settle(&mut self, seg: &Arc<Segment>, id: FileId, last: &str) -> Result<bool, SealError> {
        let by_name = seal_path(&seg.path);
        let path = if FileId::at(&by_name).map_err(io_err("stat", &by_name))? == Some(id) {
            by_name
        } else {
            let dir = dir_of(&seg.path);
            find_by_id(dir, id)
                .map_err(io_err("search the directory of", &seg.path))?
                .ok_or_else(|| SealError::SidecarMismatch {
                    path: by_name.clone(),
                    why: format!("the seal file holding seal {} is gone", self.next_seq - 1),
                })?
        };
        let (lines, torn) = read_sidecar(&path)
            .map_err(io_err("read the seal file", &path))?
            .unwrap_or_default();
        let mismatch = |why: String| SealError::SidecarMismatch {
            path: path.clone(),
            why,
        };
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(io_err("open the seal file", &path))?;
        if !torn.is_empty() {
            if !last.as_bytes().starts_with(&torn) {
                return Err(mismatch(
                    "it ends in a partial line that is not the last seal".into(),
                ));
            }
            let keep = file.metadata().map_err(io_err("stat", &path))?.len() - torn.len() as u64;
            file.set_len(keep)
                .map_err(io_err("cut the torn seal record from", &path))?;
        }
        let repaired = match lines.last() {
            Some(line) if line == last => false,
            found => {
                let record = Record::parse(last).map_err(|e| SealError::StateCorrupt {
                    path: self.state_path.clone(),
                    why: format!("its last seal: {e}"),
                })?;
                let follows = match found {
                    None => true,
                    Some(line) => sha256(line.as_bytes()) == record.prev,
                };
                if !follows {
                    return Err(mismatch(format!(
                        "its last record is neither seal {} nor the one before it",
                        record.seq
                    )));
                }
                true
            }
        };
        self.sidecar = Some(Sidecar { file, path, id });
        if repaired {
            self.unwritten = Some(last.to_owned());
            self.flush_unwritten()?;
        } else if !torn.is_empty() {
            self.sync_sidecar()?;
        }
        Ok(repaired)
    }

    fn sync_sidecar(&mut self) -> Result<(), SealError> {
        if let Some(s) = &self.sidecar {
            s.file
                .sync_data()
                .map_err(io_err("sync the seal file", &s.path))?;
        }
        Ok(())
    }

    /// Appends a record saved in the state but not yet written, and fsyncs.
    fn flush_unwritten(&mut self) -> Result<(), SealError> {
        let Some(line) = self.unwritten.as_ref() else {
            return Ok(());
        };
        let Some(sidecar) = self.sidecar.as_mut() else {
            return Err(SealError::SidecarMismatch {
                path: self.state_path.clone(),
                why: "no seal file is open".into(),
            });
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        sidecar
            .file
            .write_all(&bytes)
            .and_then(|()| sidecar.file.sync_data())
            .map_err(io_err("append to the seal file", &sidecar.path))?;
        self.unwritten = None;
        Ok(())
    }

    /// Seals `cuts` (from [`Tracker::cut`], [`Tracker::shutdown`]) in order,
    /// stamping them with `now`. Does file I/O and fsyncs: call it outside
    /// the writer's lock, from one thread.
    ///
    /// On error, the cuts not sealed are kept and retried first by the next
    /// call (merged with newer ones where one seal can cover both); the key
    /// only evolves once the state holding the next key is durably saved.
    ///
    /// # Errors
    ///
    /// [`SealError`]: I/O errors on the state or the sidecar, or cuts out of
    /// order (not in the order the tracker made them).
    pub fn seal(&mut self, cuts: Vec<Cut>, now: SystemTime) -> Result<Vec<Sealed>, SealError> {
        for cut in cuts {
            self.enqueue(cut)?;
        }
        self.flush_unwritten()?;
        let mut done = Vec::new();
        while let Some(cut) = self.queue.pop_front() {
            done.push(self.seal_one(cut, now)?);
        }
        Ok(done)
    }

    /// Queues a cut, merging it into an unsealed interval cut of the same
    /// file left by an earlier failure (one seal then covers both).
    fn enqueue(&mut self, cut: Cut) -> Result<(), SealError> {
        if cut.n != self.next_cut {
            return Err(SealError::OutOfOrder {
                expected: self.next_cut,
                got: cut.n,
            });
        }
        self.next_cut += 1;
        if let Some(back) = self.queue.back_mut() {
            if back.why == Why::Interval && back.seg.fileno == cut.seg.fileno {
                let fps = match (back.fps.take(), cut.fps.as_ref()) {
                    (Some(mut a), Some(b)) if a.len() + b.len() <= MAX_FP_LINES => {
                        a.extend_from_slice(b);
                        Some(a)
                    }
                    _ => None,
                };
                *back = Cut { fps, ..cut };
                return Ok(());
            }
        }
        self.queue.push_back(cut);
        Ok(())
    }

    /// Seals one cut. If it fails before the new state is saved, the cut
    /// goes back to the front of the queue; after that, it is sealed and
    /// only the append (kept in `unwritten`) or the sidecar move is retried.
    fn seal_one(&mut self, cut: Cut, now: SystemTime) -> Result<Sealed, SealError> {
        let (line, record) = match self.commit(&cut, now) {
            Ok(made) => made,
            Err(e) => {
                self.queue.push_front(cut);
                return Err(e);
            }
        };
        self.unwritten = Some(line);
        self.flush_unwritten()?;
        let moved_sidecar = if cut.why == Why::Rotate {
            self.sidecar = None;
            retire_sidecar(&cut.seg, &cut.seg.path)?
        } else {
            None
        };
        Ok(Sealed {
            seq: record.seq,
            fileno: record.fileno,
            why: record.why,
            lines: record.lines,
            moved_sidecar,
        })
    }

    /// Makes the record with `k_i`, saves the state holding `k_{i+1}` and
    /// the record, then erases `k_i`. Returns the line to append.
    fn commit(&mut self, cut: &Cut, now: SystemTime) -> Result<(String, Record), SealError> {
        let new_file = self.seg.as_ref().is_none_or(|s| s.fileno != cut.seg.fileno);
        if new_file || self.sidecar.is_none() {
            self.open_sidecar(&cut.seg)?;
        }
        let sidecar_id = self.sidecar.as_ref().map(|s| s.id);
        let mut record = Record {
            seq: self.next_seq,
            fileno: cut.seg.fileno,
            why: cut.why,
            time: humantime::format_rfc3339_micros(now).to_string(),
            file: encode_path(&cut.seg.path),
            skip: cut.seg.skip,
            len: cut.len,
            lines: cut.lines,
            hash: cut.hash,
            prev: self.prev,
            fps: cut.fps.clone(),
            mac: ZERO,
        };
        record.sign(&self.key);
        let line = record.to_line();
        let line_hash = sha256(line.as_bytes());
        let state = State {
            next_seq: self.next_seq + 1,
            key: self.key.step(),
            prev: line_hash,
            hash: cut.hash,
            seg: Some((*cut.seg).clone()),
            len: cut.len,
            lines: cut.lines,
            sidecar: sidecar_id,
            last: Some(line.clone()),
        };
        state.save(&self.state_path)?;
        // Durable: the chain has moved on. Dropping the old key erases it.
        self.key = state.key;
        self.next_seq += 1;
        self.prev = line_hash;
        self.seg = Some(Arc::clone(&cut.seg));
        Ok((line, record))
    }

    /// Opens `<log>.seal` for the file `seg`, creating it; a sidecar left
    /// there by an earlier file is moved away first.
    fn open_sidecar(&mut self, seg: &Arc<Segment>) -> Result<(), SealError> {
        let path = seal_path(&seg.path);
        if let Some((lines, _)) = read_sidecar(&path).map_err(io_err("read", &path))? {
            if let Some(last) = lines.last() {
                match Record::parse(last) {
                    Ok(r) if r.fileno == seg.fileno => {}
                    Ok(r) if r.fileno < seg.fileno => {
                        if let Some(old) = self.seg.clone().filter(|s| s.fileno == r.fileno) {
                            retire_sidecar(&old, &seg.path)?;
                        } else {
                            return Err(SealError::SidecarMismatch {
                                path,
                                why: format!("it holds seals of file {}", r.fileno),
                            });
                        }
                    }
                    _ => {
                        return Err(SealError::SidecarMismatch {
                            path,
                            why: "its last line is not a seal of this chain's current file".into(),
                        })
                    }
                }
            }
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err("create the seal file", &path))?;
        sync_dir(&path).map_err(io_err("sync the directory of", &path))?;
        let id = FileId::of(&file).map_err(io_err("stat", &path))?;
        self.sidecar = Some(Sidecar { file, path, id });
        Ok(())
    }
}

/// Where the state says the chain stood in the file last sealed.
struct Position {
    /// Bytes of the file sealed.
    len: u64,
    /// Lines of the file sealed.
    lines: u64,
    /// The running hash at the last seal.
    hash: Hash32,
}

/// Feeds the tracker every byte of the log after what it has seen (lines
/// written by a run that crashed, or before sealing was turned on).
fn adopt(log: &mut File, log_path: &Path, tracker: &mut Tracker) -> Result<(), SealError> {
    let size = log
        .metadata()
        .map_err(io_err("stat the audit log", log_path))?
        .len();
    let start = tracker.len;
    log.seek(SeekFrom::Start(start))
        .map_err(io_err("read the audit log", log_path))?;
    let mut reader = log.take(size - start);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(io_err("read the audit log", log_path))?;
        if n == 0 {
            return Ok(());
        }
        tracker.observe(&buf[..n]);
    }
}

/// After the file `old` got its last seal, moves its sidecar `<old
/// path>.seal` beside the file under its new name (`<rotated name>.seal`,
/// found by inode), so the next file starts a sidecar of its own. A sidecar
/// already moved (the operator rotated it with the log) or holding another
/// file's seals is left alone. When the file cannot be found (deleted, moved
/// to another directory) or truncated in place, the sidecar becomes
/// `<path>.seal.orphan-<fileno>`, for the operator to pair by hand.
fn retire_sidecar(old: &Segment, next_path: &Path) -> Result<Option<PathBuf>, SealError> {
    let path = seal_path(&old.path);
    let Some((lines, _)) = read_sidecar(&path).map_err(io_err("read", &path))? else {
        return Ok(None);
    };
    match lines.last().map(|l| Record::parse(l)) {
        Some(Ok(r)) if r.fileno == old.fileno => {}
        _ => return Ok(None),
    }
    let dir = dir_of(&old.path);
    let found = find_by_id(dir, old.id).map_err(io_err("search the directory of", &old.path))?;
    let beside = match found {
        Some(p) if p.file_name() == old.path.file_name() => {
            if next_path != old.path {
                // Still under its own name, the sidecar already beside it.
                return Ok(None);
            }
            None
        }
        Some(p) => {
            let target = seal_path(&p);
            match FileId::at(&target).map_err(io_err("stat", &target))? {
                None => Some(target),
                Some(_) => None,
            }
        }
        None => None,
    };
    let target = match beside {
        Some(t) => t,
        None => {
            let mut n = 0u32;
            loop {
                let mut name = path.as_os_str().to_owned();
                name.push(format!(".orphan-{}", old.fileno));
                if n > 0 {
                    name.push(format!("-{n}"));
                }
                let candidate = PathBuf::from(name);
                if FileId::at(&candidate)
                    .map_err(io_err("stat", &candidate))?
                    .is_none()
                {
                    break candidate;
                }
                n += 1;
            }
        }
    };
    std::fs::rename(&path, &target).map_err(io_err("move the seal file", &path))?;
    sync_dir(&path).map_err(io_err("sync the directory of", &path))?;
    Ok(Some(target))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::seal::files::seal_path;
    use crate::audit::seal::keygen;
    use crate::audit::seal::testing::{append_open, at, problem, Rig};
    use crate::audit::seal::verify::{verify, Problem, Span};

    #[test]
    fn a_crash_before_any_seal_leaves_an_unsealed_tail_that_a_restart_seals_late() {
        let mut rig = Rig::new();
        rig.write(2);
        rig.seal();
        rig.write(3);
        // kill -9: no final seal.
        let report = rig.verify().unwrap();
        assert_eq!(
            report.unsealed,
            vec![Span {
                file: rig.log.clone(),
                first: 3,
                last: 5
            }]
        );
        assert!(report.to_string().contains("UNSEALED (not verified): "));
        let resumed = rig.restart();
        assert_eq!((resumed.adopted_lines, resumed.new_file), (3, false));
        rig.write(1);
        rig.shutdown();
        let report = rig.verify().unwrap();
        assert!(report.unsealed.is_empty());
        assert_eq!(
            report.late,
            vec![Span {
                file: rig.log.clone(),
                first: 3,
                last: 5
            }]
        );
        assert_eq!(report.lines, 6);
    }

    /// The crash window between saving the evolved state and appending the
    /// record (record missing entirely, or torn by a power cut): a restart
    /// completes the sidecar from the state, and the run verifies.
    #[test]
    fn a_crash_between_saving_the_state_and_appending_the_seal_is_repaired() {
        for torn in [false, true] {
            let mut rig = Rig::new();
            rig.write(2);
            rig.seal();
            rig.write(2);
            rig.seal();
            let sidecar = seal_path(&rig.log);
            let full = std::fs::read(&sidecar).unwrap();
            let lines = rig.seal_lines();
            let keep = full.len() - lines[1].len() - 1 + if torn { 30 } else { 0 };
            std::fs::write(&sidecar, &full[..keep]).unwrap();
            let resumed = rig.restart();
            assert!(resumed.repaired_sidecar);
            assert_eq!(resumed.adopted_lines, 0);
            assert_eq!(std::fs::read(&sidecar).unwrap(), full);
            rig.write(1);
            rig.shutdown();
            let report = rig.verify().unwrap();
            assert_eq!((report.seals, report.lines), (3, 5));
            assert!(report.late.is_empty() && report.unsealed.is_empty());
        }
    }

    #[test]
    fn a_log_truncated_while_stopped_refuses_to_resume() {
        let mut rig = Rig::new();
        rig.write(3);
        rig.shutdown();
        let bytes = std::fs::read(&rig.log).unwrap();
        std::fs::write(&rig.log, &bytes[..10]).unwrap();
        let err = Sealer::open(&rig.state, &rig.log, at(9)).unwrap_err();
        assert!(
            matches!(err, SealError::LogTruncated { sealed, .. } if sealed == bytes.len() as u64)
        );
    }

    #[test]
    fn rotation_moves_the_sidecar_beside_the_renamed_log_and_the_chain_carries_on() {
        let mut rig = Rig::new();
        rig.write(2);
        rig.seal();
        rig.write(1);
        let rotated = rig.dir.path().join("audit.log.1");
        std::fs::rename(&rig.log, &rotated).unwrap();
        rig.file = append_open(&rig.log);
        rig.tracker.reopened(FileId::of(&rig.file).unwrap(), 0);
        rig.write(2);
        let sealed = rig.seal();
        assert_eq!(sealed[0].why, Why::Rotate);
        assert_eq!(
            sealed[0].moved_sidecar.as_deref(),
            Some(seal_path(&rotated).as_path())
        );
        assert_eq!((sealed[1].fileno, sealed[1].lines), (1, 2));
        rig.shutdown();
        let both = [rotated.clone(), rig.log.clone()];
        let report = verify(&rig.key0, &both).unwrap();
        assert_eq!((report.files, report.lines, report.seals), (2, 5, 4));
        // Out of order, or the current file alone, fails.
        let swapped = [rig.log.clone(), rotated.clone()];
        assert!(matches!(
            problem(verify(&rig.key0, &swapped)).1,
            Problem::NoStart { found: 2 }
        ));
        assert!(matches!(problem(rig.verify()).1, Problem::NoStart { .. }));
        // A line added to the finished file after its final seal.
        let mut f = append_open(&rotated);
        f.write_all(b"late line\n").unwrap();
        let (line, p) = problem(verify(&rig.key0, &both));
        assert_eq!((line, p), (4, Problem::AfterFinal { seq: 1 }));
    }

    #[test]
    fn a_restart_after_rotation_while_stopped_continues_with_the_next_file() {
        let mut rig = Rig::new();
        rig.write(2);
        rig.shutdown();
        let rotated = rig.dir.path().join("audit.log-20261123");
        std::fs::rename(&rig.log, &rotated).unwrap();
        rig.file = append_open(&rig.log);
        let resumed = rig.restart();
        assert!(resumed.new_file);
        assert_eq!(
            resumed.moved_sidecar.as_deref(),
            Some(seal_path(&rotated).as_path())
        );
        rig.write(3);
        rig.shutdown();
        let report = verify(&rig.key0, &[rotated, rig.log.clone()]).unwrap();
        assert_eq!((report.files, report.lines, report.seals), (2, 5, 2));
    }

    #[test]
    fn sealing_an_existing_log_adopts_its_lines_as_late() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("old.log");
        std::fs::write(&log, "before sealing\nwas turned on\n").unwrap();
        let state = dir.path().join("state");
        let key0 = keygen(&state).unwrap();
        let (_s, _t, resumed) = Sealer::open(&state, &log, at(0)).unwrap();
        assert_eq!((resumed.adopted_lines, resumed.next_seq), (2, 1));
        let report = verify(&key0, std::slice::from_ref(&log)).unwrap();
        assert_eq!(
            report.late,
            vec![Span {
                file: log.clone(),
                first: 1,
                last: 2
            }]
        );
    }

    /// SIGHUP found a file with bytes already in it: they are not the
    /// server's, so the seals start after them and the verifier says so.
    #[test]
    fn bytes_found_in_a_file_opened_at_reopen_are_skipped_and_reported() {
        let mut rig = Rig::new();
        rig.write(2);
        let rotated = rig.dir.path().join("audit.log.old");
        std::fs::rename(&rig.log, &rotated).unwrap();
        std::fs::write(&rig.log, b"someone else's\nbytes").unwrap();
        rig.file = append_open(&rig.log);
        rig.tracker.reopened(FileId::of(&rig.file).unwrap(), 20);
        rig.write(2);
        rig.seal();
        rig.shutdown();
        let logs = [rotated, rig.log.clone()];
        let report = verify(&rig.key0, &logs).unwrap();
        assert_eq!(report.skipped, vec![(rig.log.clone(), 20)]);
        assert_eq!((report.lines, report.seals), (4, 3));
        assert!(report
            .to_string()
            .contains("starts with 20 bytes that were there before"));
        // Editing the skipped bytes is not caught (they are not sealed);
        // shortening them shifts the sealed lines and is.
        let bytes = std::fs::read(&rig.log).unwrap();
        std::fs::write(
            &rig.log,
            [&b"SOMEONE ELSE'S\nBYTES"[..], &bytes[20..]].concat(),
        )
        .unwrap();
        assert!(verify(&rig.key0, &logs).is_ok());
        std::fs::write(&rig.log, &bytes[1..]).unwrap();
        assert!(verify(&rig.key0, &logs).is_err());
    }

    #[test]
    fn cuts_must_be_sealed_in_order() {
        let mut rig = Rig::new();
        rig.write(1);
        let first = rig.tracker.cut();
        rig.write(1);
        let second = rig.tracker.cut();
        let err = rig.sealer.seal(second, at(1)).unwrap_err();
        assert!(matches!(
            err,
            SealError::OutOfOrder {
                expected: 0,
                got: 1
            }
        ));
        rig.sealer.seal(first, at(1)).unwrap();
    }
}
