//! The seal file beside a log (`<log>.seal`): finding it after renames,
//! repairing it after a crash, appending to it, and moving it beside its
//! log when the log is rotated.

use super::chain::Segment;
use super::error::{io_err, SealError};
use super::files::{dir_of, find_by_id, seal_path, sidecar_tail, sync_dir, FileId};
use super::key::sha256;
use super::record::Record;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// An open sidecar.
pub(super) struct Sidecar {
    /// Opened for appending.
    file: File,
    /// Its path when opened (may have been renamed since).
    pub(super) path: PathBuf,
    /// Its identity, saved in the state to find it after a rename.
    pub(super) id: FileId,
}

impl Sidecar {
    /// Finds the sidecar `id` of the file `seg` (by name, else by inode in
    /// its directory), and makes it end with `last`, the record the state
    /// says was made last: a torn partial record is cut, and `last` is
    /// returned to be appended if a crash kept it out.
    pub(super) fn resume(
        seg: &Segment,
        id: FileId,
        last: &str,
        state_path: &Path,
    ) -> Result<(Sidecar, Option<String>), SealError> {
        let by_name = seal_path(&seg.path);
        let path = if FileId::at(&by_name).map_err(io_err("stat", &by_name))? == Some(id) {
            by_name
        } else {
            find_by_id(dir_of(&seg.path), id)
                .map_err(io_err("search the directory of", &seg.path))?
                .ok_or_else(|| SealError::SidecarMismatch {
                    path: by_name.clone(),
                    why: "the seal file holding the last seal is gone".into(),
                })?
        };
        let tail = sidecar_tail(&path)
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
        let torn = &tail.torn;
        if !torn.is_empty() {
            // A seal record or a fingerprint line cut short by a crash.
            let fp = b"fp v2 ";
            let torn_fp = torn.starts_with(fp) || fp.starts_with(torn);
            if !last.as_bytes().starts_with(torn) && !torn_fp {
                return Err(mismatch(
                    "it ends in a partial line that is not the last seal".into(),
                ));
            }
            let keep = file.metadata().map_err(io_err("stat", &path))?.len() - torn.len() as u64;
            file.set_len(keep)
                .map_err(io_err("cut the torn seal record from", &path))?;
            file.sync_data()
                .map_err(io_err("sync the seal file", &path))?;
        }
        let missing = match tail.last_seal.as_deref() {
            Some(line) if line == last => None,
            found => {
                let record = Record::parse(last).map_err(|e| SealError::StateCorrupt {
                    path: state_path.to_path_buf(),
                    why: format!("its last seal: {e}"),
                })?;
                let follows = found.is_none_or(|line| sha256(line.as_bytes()) == record.prev);
                if !follows {
                    return Err(mismatch(format!(
                        "its last record is neither seal {} nor the one before it",
                        record.seq
                    )));
                }
                Some(last.to_owned())
            }
        };
        Ok((Sidecar { file, path, id }, missing))
    }

    /// Opens `<log>.seal` for the file `seg`, creating it; a sidecar left
    /// there by an earlier file (`current`, the file of the last seal) is
    /// moved away first.
    pub(super) fn create(
        seg: &Arc<Segment>,
        current: Option<&Arc<Segment>>,
    ) -> Result<Sidecar, SealError> {
        let path = seal_path(&seg.path);
        let tail = sidecar_tail(&path).map_err(io_err("read", &path))?;
        if let Some(last) = tail.and_then(|t| t.last_seal) {
            match Record::parse(&last) {
                Ok(r) if r.fileno == seg.fileno => {}
                Ok(r) if r.fileno < seg.fileno => {
                    if let Some(old) = current.filter(|s| s.fileno == r.fileno) {
                        retire(old, &seg.path)?;
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
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err("create the seal file", &path))?;
        sync_dir(&path).map_err(io_err("sync the directory of", &path))?;
        let id = FileId::of(&file).map_err(io_err("stat", &path))?;
        Ok(Sidecar { file, path, id })
    }

    /// Appends `line` and a newline in one write; with `sync`, fsyncs.
    pub(super) fn append(&mut self, line: &str, sync: bool) -> Result<(), SealError> {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.file
            .write_all(&bytes)
            .and_then(|()| if sync { self.file.sync_data() } else { Ok(()) })
            .map_err(io_err("append to the seal file", &self.path))
    }
}

/// After the file `old` got its last seal, moves its sidecar `<old
/// path>.seal` beside the file under its new name (`<rotated name>.seal`,
/// found by inode), so the next file starts a sidecar of its own. A sidecar
/// already moved (the operator rotated it with the log) or holding another
/// file's seals is left alone. When the file cannot be found (deleted, moved
/// to another directory) or truncated in place, the sidecar becomes
/// `<path>.seal.orphan-<fileno>`, for the operator to pair by hand.
pub(super) fn retire(old: &Segment, next_path: &Path) -> Result<Option<PathBuf>, SealError> {
    let path = seal_path(&old.path);
    let Some(tail) = sidecar_tail(&path).map_err(io_err("read", &path))? else {
        return Ok(None);
    };
    match tail.last_seal.as_deref().map(Record::parse) {
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
        None => orphan_name(&path, old.fileno)?,
    };
    std::fs::rename(&path, &target).map_err(io_err("move the seal file", &path))?;
    sync_dir(&path).map_err(io_err("sync the directory of", &path))?;
    Ok(Some(target))
}

/// `<path>.orphan-<fileno>`, with `-<n>` added if that exists.
fn orphan_name(path: &Path, fileno: u64) -> Result<PathBuf, SealError> {
    let mut n = 0u32;
    loop {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".orphan-{fileno}"));
        if n > 0 {
            name.push(format!("-{n}"));
        }
        let candidate = PathBuf::from(name);
        if FileId::at(&candidate)
            .map_err(io_err("stat", &candidate))?
            .is_none()
        {
            return Ok(candidate);
        }
        n += 1;
    }
}
