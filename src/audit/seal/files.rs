//! Files on disk: identities that survive renames, the sidecar's path and
//! text, durable renames.

use super::record::MAX_SEAL_FILE_LINE;
use std::fs::File;
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A file's identity on this machine, to tell "the same file reopened" from
/// "a new file at the same path" (rotation) without trusting names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileId {
    /// The device holding the file.
    pub dev: u64,
    /// Its inode number on that device.
    pub ino: u64,
}

impl FileId {
    /// The identity of an open file.
    ///
    /// # Errors
    ///
    /// The I/O error of `fstat`.
    pub fn of(file: &File) -> io::Result<FileId> {
        Ok(FileId::from_meta(&file.metadata()?))
    }

    pub(super) fn from_meta(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The identity of the file at `path`, or `None` if there is none.
    pub(super) fn at(path: &Path) -> io::Result<Option<FileId>> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) => Ok(Some(FileId::from_meta(&meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The sidecar path of a log: `<log>.seal`.
pub fn seal_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".seal");
    PathBuf::from(name)
}

/// Overwrites a (now unlinked) file's bytes with zeros and syncs them.
pub(super) fn wipe(file: &mut File) -> io::Result<()> {
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(0))?;
    let zeros = [0u8; 4096];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_data()
}

/// fsyncs the directory holding `path`, so a rename or create in it is durable.
pub(super) fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The first entry of `dir` that is the file `id`, if any.
pub(super) fn find_by_id(dir: &Path, id: FileId) -> io::Result<Option<PathBuf>> {
    use std::os::unix::fs::DirEntryExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.ino() != id.ino {
            continue;
        }
        if let Ok(meta) = std::fs::symlink_metadata(entry.path()) {
            if FileId::from_meta(&meta) == id {
                return Ok(Some(entry.path()));
            }
        }
    }
    Ok(None)
}

pub(super) fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// The end of a sidecar, which is all the sealer needs of it.
#[derive(Debug, Default)]
pub(super) struct SidecarTail {
    /// Its last complete seal line (fingerprint lines skipped).
    pub last_seal: Option<String>,
    /// Bytes after its last newline: a record torn by a crash.
    pub torn: Vec<u8>,
}

/// Reads the end of the sidecar at `path` (at most what one fingerprint
/// line and one seal line take), or `None` if there is none.
pub(super) fn sidecar_tail(path: &Path) -> io::Result<Option<SidecarTail>> {
    let mut file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let size = file.metadata()?.len();
    let want = (2 * MAX_SEAL_FILE_LINE) as u64;
    let from = size.saturating_sub(want);
    file.seek(SeekFrom::Start(from))?;
    let mut bytes = Vec::new();
    file.take(want).read_to_end(&mut bytes)?;
    let cut = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (complete, torn) = bytes.split_at(cut);
    let last_seal = String::from_utf8_lossy(complete)
        .lines()
        .rev()
        .find(|l| l.starts_with("seal "))
        .map(str::to_owned);
    Ok(Some(SidecarTail {
        last_seal,
        torn: torn.to_vec(),
    }))
}

/// Why a file given to the verifier cannot be read as one.
#[derive(Debug)]
pub(super) enum OpenError {
    /// The OS refused.
    Io(io::Error),
    /// It is not a regular file (a FIFO, a device, a directory...).
    NotRegular(&'static str),
}

/// Opens `path` for reading only if it is a regular file: opened without
/// blocking (a FIFO would otherwise wait for a writer) and checked with
/// `fstat` on the open descriptor, so it cannot be swapped in between.
pub(super) fn open_regular(path: &Path) -> Result<File, OpenError> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(OpenError::Io)?;
    let kind = file.metadata().map_err(OpenError::Io)?.file_type();
    if kind.is_file() {
        return Ok(file);
    }
    Err(OpenError::NotRegular(if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }))
}

/// A line longer than allowed, or an I/O error, while reading lines.
#[derive(Debug)]
pub(super) enum LineError {
    /// The OS error.
    Io(io::Error),
    /// A line (its newline included) longer than the limit.
    TooLong,
}

/// Reads the next line of `reader` (with its `\n`, if any) into `line`,
/// refusing lines longer than `max` bytes without reading further.
/// Returns whether a line was read (false at the end of the file).
pub(super) fn read_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> Result<bool, LineError> {
    line.clear();
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LineError::Io(e)),
        };
        if available.is_empty() {
            return Ok(!line.is_empty());
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if line.len() + take > max {
            return Err(LineError::TooLong);
        }
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        if done {
            return Ok(true);
        }
    }
}

/// An exclusive lock on `<state>.lock`, held while a sealer uses the state.
/// A lock file beside the state, because the state itself is replaced by
/// rename at every seal (a lock on it would stay on the old inode).
#[derive(Debug)]
pub(super) struct StateLock {
    /// The lock file, locked with `flock`; closing it releases the lock.
    _file: File,
}

impl StateLock {
    /// The lock file of a state.
    pub(super) fn path_of(state: &Path) -> PathBuf {
        let mut name = state.as_os_str().to_owned();
        name.push(".lock");
        PathBuf::from(name)
    }

    /// Takes the lock without waiting. `Ok(None)`: another process (or
    /// another sealer in this one) holds it.
    pub(super) fn take(state: &Path) -> io::Result<Option<StateLock>> {
        use std::os::fd::AsRawFd;
        use std::os::unix::fs::OpenOptionsExt;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(StateLock::path_of(state))?;
        // SAFETY: flock(2) on a descriptor we own; no memory involved.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            return Ok(Some(StateLock { _file: file }));
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            Ok(None)
        } else {
            Err(e)
        }
    }
}
