//! The audit trail: one line per answered request, appended to a file.
//!
//! Format (see the README): `<RFC 3339 UTC time> <peer> <code> <phrase>`.
//!
//! The file is opened once in append mode (`O_APPEND`), created if missing
//! and never truncated. Each line is formatted in full and handed to the
//! kernel in one `write`, which `O_APPEND` makes atomic with respect to the
//! other workers' writes, so lines never interleave and no lock is needed.
//! Because every write lands at the current end of file, `logrotate`'s
//! `copytruncate` works: after truncation the next line starts at offset 0.

use crate::protocol::Answer;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use thiserror::Error;

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
}

/// The append-only audit log, shared by every worker.
#[derive(Debug)]
pub struct AuditLog {
    /// Opened with `O_APPEND`; written through `&File`, so no lock.
    file: File,
    /// Where the file is, for messages.
    path: PathBuf,
}

impl AuditLog {
    /// Opens (creating if needed) the log at `path` and its parent directory.
    ///
    /// # Errors
    ///
    /// [`AuditError`] when the directory or file cannot be created or opened.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| AuditError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .map_err(|source| AuditError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(AuditLog {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Where the log is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one record, stamped with the current time.
    ///
    /// # Errors
    ///
    /// The I/O error of the write; the caller must then not send `T`/`F`.
    pub fn record(&self, peer: SocketAddr, answer: &Answer) -> io::Result<()> {
        self.append(&format_line(SystemTime::now(), peer, answer))
    }

    /// Appends one record per answer, all stamped with the current time, in
    /// a single write (so lines of one batch are never separated).
    ///
    /// # Errors
    ///
    /// The I/O error of the write; the caller must then send none of the
    /// batch's `T`/`F`.
    pub fn record_batch<'a>(
        &self,
        peer: SocketAddr,
        answers: impl IntoIterator<Item = &'a Answer>,
    ) -> io::Result<()> {
        let at = SystemTime::now();
        let mut lines = String::new();
        for answer in answers {
            lines.push_str(&format_line(at, peer, answer));
        }
        self.append(&lines)
    }

    /// Appends one complete line (it must end in `\n`) in a single write.
    ///
    /// # Errors
    ///
    /// The I/O error of the write.
    pub fn append(&self, line: &str) -> io::Result<()> {
        // One write(2) for a regular file; `write_all` only loops after a
        // short write, which regular files give only on errors like ENOSPC.
        (&self.file).write_all(line.as_bytes())
    }

    /// Flushes the file's data to stable storage; called at shutdown.
    ///
    /// # Errors
    ///
    /// The I/O error of `fdatasync`.
    pub fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }
}

/// One audit line, newline included.
pub fn format_line(at: SystemTime, peer: SocketAddr, answer: &Answer) -> String {
    format!(
        "{} {} {} {}\n",
        humantime::format_rfc3339_micros(at),
        peer,
        answer.verdict.code(),
        answer.phrase
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Verdict;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn line_format() {
        let at = UNIX_EPOCH + Duration::from_micros(1_790_000_000_123_456);
        let answer = Answer {
            verdict: Verdict::Prime,
            phrase: "'17' is a prime number".into(),
        };
        let peer: SocketAddr = "[::1]:4242".parse().unwrap();
        assert_eq!(
            format_line(at, peer, &answer),
            "2026-09-21T14:13:20.123456Z [::1]:4242 T '17' is a prime number\n"
        );
    }

    #[test]
    fn open_creates_directories_and_appends() {
        let dir = std::env::temp_dir().join(format!("prime-audit-{}", std::process::id()));
        let path = dir.join("nested/audit.log");
        let log = AuditLog::open(&path).unwrap();
        log.append("one\n").unwrap();
        drop(log);
        let log = AuditLog::open(&path).unwrap();
        log.append("two\n").unwrap();
        log.sync().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unopenable_path_is_a_clear_error() {
        let err = AuditLog::open(Path::new("/proc/definitely/not/here.log")).unwrap_err();
        assert!(err
            .to_string()
            .starts_with("cannot create the audit log directory"));
    }
}
