//! What can go wrong while sealing, resuming or creating a state.

use std::io;
use std::path::{Path, PathBuf};
use thiserror::Error;

/// Errors while sealing, resuming or creating a state.
#[derive(Debug, Error)]
pub enum SealError {
    /// A file operation failed.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What we were doing, e.g. "write the seal file".
        what: &'static str,
        /// The file concerned.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// Another sealer (another server, most likely) holds the state's lock.
    #[error("the sealing state {} is in use by another process (it holds the lock {}): two servers must not share a sealing state, since they would sign different seals with the same keys; give each server its own (prime-audit keygen)", state.display(), lock.display())]
    StateInUse {
        /// The state file.
        state: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// `keygen` would overwrite an existing state.
    #[error("{} already exists; refusing to overwrite a sealing state", .0.display())]
    StateExists(PathBuf),
    /// The state file is readable or writable by others.
    #[error("{} is accessible to group or others (mode {mode:o}); it holds the sealing key: chmod 600 it", path.display())]
    StatePermissions {
        /// The state file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The state file is not one we wrote.
    #[error("{} is not a valid sealing state: {why}", path.display())]
    StateCorrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The log is shorter than its seals cover: truncated while stopped.
    #[error("the audit log {} has {size} bytes but its seals cover {sealed}: it was truncated or replaced in place; check it with prime-audit verify, then move it and its .seal aside", path.display())]
    LogTruncated {
        /// The log.
        path: PathBuf,
        /// Its size now.
        size: u64,
        /// Bytes sealed.
        sealed: u64,
    },
    /// The seal file does not continue where the state says it should.
    #[error("the seal file {} does not match the sealing state: {why}", path.display())]
    SidecarMismatch {
        /// The seal file.
        path: PathBuf,
        /// What does not match.
        why: String,
    },
    /// Cuts were sealed out of order (a bug in the caller).
    #[error("cut {got} handed to the sealer, expected cut {expected}")]
    OutOfOrder {
        /// The cut number expected next.
        expected: u64,
        /// The one received.
        got: u64,
    },
    /// No randomness for a new key.
    #[error("cannot get random bytes for a new key: {0}")]
    Random(getrandom::Error),
}

pub(super) fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> SealError + 'a {
    move |source| SealError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}
