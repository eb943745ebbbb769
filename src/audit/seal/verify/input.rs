//! Reading files the verifier cannot trust: regular files only (a FIFO or a
//! device is refused at once), streamed line by line with bounded lines,
//! so memory does not grow with the files.

use super::super::files::{open_regular, read_line, LineError, OpenError};
use super::super::record::{FpLine, MAX_SEAL_FILE_LINE};
use super::report::Problem;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

/// The longest log line read (an audit line is at most a few KiB).
pub const MAX_LOG_LINE: usize = 64 * 1024;

/// Opens a file the verifier was given; `Ok(None)` if it does not exist
/// and `missing_ok`.
pub(super) fn open(path: &Path, missing_ok: bool) -> Result<Option<File>, Problem> {
    match open_regular(path) {
        Ok(f) => Ok(Some(f)),
        Err(OpenError::Io(e)) if missing_ok && e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(OpenError::Io(e)) => Err(unreadable(path, &e)),
        Err(OpenError::NotRegular(kind)) => Err(Problem::NotRegular {
            path: path.to_path_buf(),
            kind,
        }),
    }
}

/// `path` could not be read.
pub(super) fn unreadable(path: &Path, e: &io::Error) -> Problem {
    Problem::Unreadable {
        path: path.to_path_buf(),
        why: e.to_string(),
    }
}

/// A log read line by line, with one line of look-ahead.
pub(super) struct LogLines<'p> {
    /// The log's path, for errors.
    path: &'p Path,
    /// The log.
    reader: BufReader<File>,
    /// Lines read ahead, not yet consumed (at most one).
    ahead: VecDeque<Vec<u8>>,
    /// Bytes consumed so far.
    pub(super) pos: u64,
    /// Lines consumed so far (after `skip`).
    pub(super) line_no: u64,
}

impl<'p> LogLines<'p> {
    pub(super) fn new(path: &'p Path, file: File) -> LogLines<'p> {
        LogLines {
            path,
            reader: BufReader::with_capacity(256 * 1024, file),
            ahead: VecDeque::new(),
            pos: 0,
            line_no: 0,
        }
    }

    fn fill(&mut self, n: usize) -> Result<(), Problem> {
        while self.ahead.len() < n {
            let mut line = Vec::new();
            match read_line(&mut self.reader, &mut line, MAX_LOG_LINE) {
                Ok(true) => self.ahead.push_back(line),
                Ok(false) => break,
                Err(LineError::Io(e)) => return Err(unreadable(self.path, &e)),
                Err(LineError::TooLong) => return Err(Problem::LineTooLong { max: MAX_LOG_LINE }),
            }
        }
        Ok(())
    }

    /// The log's path.
    pub(super) fn path(&self) -> &Path {
        self.path
    }

    /// The next line (with its `\n`, unless it is the last and has none).
    pub(super) fn next_line(&mut self) -> Result<Option<Vec<u8>>, Problem> {
        self.fill(1)?;
        let line = self.ahead.pop_front();
        if let Some(l) = &line {
            self.pos += l.len() as u64;
            self.line_no += 1;
        }
        Ok(line)
    }

    /// The line after the next `i`, without consuming it.
    pub(super) fn peek(&mut self, i: usize) -> Result<Option<&[u8]>, Problem> {
        self.fill(i + 1)?;
        Ok(self.ahead.get(i).map(Vec::as_slice))
    }

    /// Skips `n` raw bytes at the start; returns how many there were.
    pub(super) fn skip(&mut self, n: u64) -> Result<u64, Problem> {
        let skipped = io::copy(&mut (&mut self.reader).take(n), &mut io::sink())
            .map_err(|e| unreadable(self.path, &e))?;
        self.pos += skipped;
        Ok(skipped)
    }
}

/// One seal line and the fingerprint line just before it, if any.
pub(super) struct SealLine {
    /// Its line number in the seal file.
    pub at: u64,
    /// The record's text.
    pub text: String,
    /// The fingerprint line just before it: (its seal number, its digits).
    pub fp: Option<(u64, String)>,
}

/// A seal file read one record at a time.
pub(super) struct SealFile<'p> {
    /// Its path, for errors.
    path: &'p Path,
    /// The file.
    reader: BufReader<File>,
    /// Lines read.
    line_no: u64,
    /// The fingerprint line read last, waiting for its seal.
    fp: Option<(u64, String)>,
    /// The file ended in a partial line (a record torn by a crash).
    pub torn: bool,
}

impl<'p> SealFile<'p> {
    pub(super) fn new(path: &'p Path, file: File) -> SealFile<'p> {
        SealFile {
            path,
            reader: BufReader::with_capacity(64 * 1024, file),
            line_no: 0,
            fp: None,
            torn: false,
        }
    }

    /// The next seal line; a problem comes with the seal file's line number.
    pub(super) fn next(&mut self) -> Result<Option<SealLine>, (u64, Problem)> {
        let mut bytes = Vec::new();
        loop {
            let at = self.line_no + 1;
            match read_line(&mut self.reader, &mut bytes, MAX_SEAL_FILE_LINE) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(LineError::Io(e)) => return Err((at, unreadable(self.path, &e))),
                Err(LineError::TooLong) => {
                    return Err((
                        at,
                        Problem::LineTooLong {
                            max: MAX_SEAL_FILE_LINE,
                        },
                    ))
                }
            }
            self.line_no = at;
            if bytes.pop() != Some(b'\n') {
                // A crash cut the last record short: ignored, reported.
                self.torn = true;
                return Ok(None);
            }
            let text = String::from_utf8(std::mem::take(&mut bytes)).map_err(|_| {
                (
                    at,
                    Problem::Malformed {
                        at,
                        why: "not UTF-8".into(),
                    },
                )
            })?;
            if let Some((seq, digits)) = FpLine::parse(&text) {
                self.fp = Some((seq, digits.to_owned()));
                continue;
            }
            return Ok(Some(SealLine {
                at,
                text,
                fp: self.fp.take(),
            }));
        }
    }
}
