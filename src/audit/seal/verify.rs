//! `prime-audit verify`: walks the chain over the given files and checks
//! every seal and every sealed byte.

use super::chain::Chain;
use super::files::{read_sidecar, seal_path};
use super::key::{sha256, Hash32, Key, ZERO};
use super::record::{Record, Why};
use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use thiserror::Error;

/// What is wrong, for [`Failure`].
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum Problem {
    /// The log or its seal file could not be read.
    #[error("cannot read {}: {why}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The OS error.
        why: String,
    },
    /// A file other than the last has no seal file.
    #[error("no seal file {} (only the last file may lack one)", .0.display())]
    MissingSealFile(PathBuf),
    /// A seal line is not a well-formed record.
    #[error("seal file line {at}: not a seal record: {why}")]
    Malformed {
        /// Line number in the seal file.
        at: u64,
        /// What is wrong.
        why: String,
    },
    /// The chain does not start with seal 0 in the first file given.
    #[error("the chain does not start here: seal 0 is missing, the first seal is {found} (give every file, oldest first)")]
    NoStart {
        /// The first seal number found.
        found: u64,
    },
    /// One or more seals are missing.
    #[error("seal {expected} is missing: the next seal found is {found}")]
    MissingSeal {
        /// The seal expected.
        expected: u64,
        /// The seal found instead.
        found: u64,
    },
    /// A seal number goes back or repeats.
    #[error("seal {found} is out of order or repeated (expected seal {expected})")]
    Reordered {
        /// The seal expected.
        expected: u64,
        /// The seal found instead.
        found: u64,
    },
    /// The MAC does not verify with `k_seq`.
    #[error("seal {seq} was not made with the key for seal {seq}: forged, altered, or sealed with another key")]
    BadMac {
        /// The seal number.
        seq: u64,
    },
    /// `prev` does not hash the previous seal.
    #[error("seal {seq} does not follow the seal before it (its previous-seal hash differs)")]
    BrokenChain {
        /// The seal number.
        seq: u64,
    },
    /// The seal belongs to another file of the chain.
    #[error("seal {seq} belongs to file {found} of the chain, expected file {expected} (files out of order, or a seal file from another log)")]
    WrongFile {
        /// The seal number.
        seq: u64,
        /// The file number it carries.
        found: u64,
        /// The file number expected.
        expected: u64,
    },
    /// The seal covers less than the one before it, or changes `skip`.
    #[error("seal {seq} does not extend the seal before it")]
    Backwards {
        /// The seal number.
        seq: u64,
    },
    /// A sealed line was changed.
    #[error("line changed since seal {seq} sealed it")]
    Changed {
        /// The seal covering it.
        seq: u64,
    },
    /// A line was inserted among sealed lines.
    #[error("line inserted among lines sealed by seal {seq}")]
    Inserted {
        /// The seal whose lines it is among.
        seq: u64,
    },
    /// A sealed line was removed just before this one.
    #[error("a line sealed by seal {seq} was removed here (before this line)")]
    Removed {
        /// The seal that covered it.
        seq: u64,
    },
    /// The lines do not match, and the fingerprints cannot tell which one.
    #[error("lines {first}-{last} differ from what seal {seq} sealed")]
    Differs {
        /// The seal.
        seq: u64,
        /// First line of its range.
        first: u64,
        /// Last line of its range.
        last: u64,
    },
    /// The file ends before what a seal covers.
    #[error(
        "file truncated: it ends at byte {size}, but seal {seq} covers {len} bytes ({lines} lines)"
    )]
    Truncated {
        /// The seal.
        seq: u64,
        /// Bytes the file has.
        size: u64,
        /// Bytes the seal covers.
        len: u64,
        /// Lines the seal covers.
        lines: u64,
    },
    /// Lines after a file's final (`rotate`) seal.
    #[error("line added after the file's final seal {seq}")]
    AfterFinal {
        /// The final seal.
        seq: u64,
    },
    /// A seal after a file's final seal.
    #[error("seal {seq} follows the file's final seal")]
    SealAfterFinal {
        /// The seal number.
        seq: u64,
    },
}

/// The first problem [`verify`] found, located in a file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The log file concerned.
    pub file: PathBuf,
    /// Its 1-based line number (0 when the problem is not at a line).
    pub line: u64,
    /// What is wrong.
    pub problem: Problem,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.problem)
        } else {
            write!(f, "{}: {}", self.file.display(), self.problem)
        }
    }
}

impl std::error::Error for Failure {}

/// A run of lines of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The log file.
    pub file: PathBuf,
    /// First line (1-based).
    pub first: u64,
    /// Last line.
    pub last: u64,
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.last - self.first + 1;
        let s = if n == 1 { "" } else { "s" };
        write!(
            f,
            "{} lines {}-{} ({n} line{s})",
            self.file.display(),
            self.first,
            self.last
        )
    }
}

/// What a successful [`verify`] checked, and what it could not vouch for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Log files checked.
    pub files: usize,
    /// Lines in them, sealed or not.
    pub lines: u64,
    /// Seals checked.
    pub seals: u64,
    /// Time of the last seal, as written.
    pub last_seal: Option<String>,
    /// Lines no seal covers: after a file's last seal (a crash, or seals
    /// removed from the end; the verifier cannot tell which).
    pub unsealed: Vec<Span>,
    /// Lines sealed only at start-up, found on disk after a crash or before
    /// sealing began: they were not sealed as they were written.
    pub late: Vec<Span>,
    /// Files whose first bytes were there when the server opened them, and
    /// are not sealed: (file, bytes).
    pub skipped: Vec<(PathBuf, u64)>,
    /// Seal files ending in a torn (partial) record, ignored.
    pub torn: Vec<PathBuf>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ok: {} file{}, {} line{}, {} seal{}",
            self.files,
            plural(self.files as u64),
            self.lines,
            plural(self.lines),
            self.seals,
            plural(self.seals)
        )?;
        match &self.last_seal {
            Some(t) => write!(f, ", last seal {t}")?,
            None => write!(f, ", no seal")?,
        }
        if self.unsealed.is_empty() {
            write!(f, "; unsealed tail: none")?;
        } else {
            let spans: Vec<String> = self.unsealed.iter().map(Span::to_string).collect();
            write!(f, "; UNSEALED (not verified): {}", spans.join(", "))?;
        }
        if !self.late.is_empty() {
            let spans: Vec<String> = self.late.iter().map(Span::to_string).collect();
            write!(
                f,
                "; sealed late, at start-up (found on disk, not seen written): {}",
                spans.join(", ")
            )?;
        }
        for (file, bytes) in &self.skipped {
            write!(
                f,
                "; {} starts with {bytes} bytes that were there before the server opened it (not sealed)",
                file.display()
            )?;
        }
        for file in &self.torn {
            write!(
                f,
                "; {} ends in a torn seal record (ignored)",
                seal_path(file).display()
            )?;
        }
        Ok(())
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// Reads a log line by line with a little look-ahead.
struct LogLines {
    /// The log.
    reader: BufReader<File>,
    /// Lines read ahead, not yet consumed.
    ahead: VecDeque<Vec<u8>>,
    /// Bytes consumed so far.
    pos: u64,
    /// Lines consumed so far (after `skip`).
    line_no: u64,
}

impl LogLines {
    fn fill(&mut self, n: usize) -> io::Result<()> {
        while self.ahead.len() < n {
            let mut line = Vec::new();
            if self.reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            self.ahead.push_back(line);
        }
        Ok(())
    }

    fn next_line(&mut self) -> io::Result<Option<Vec<u8>>> {
        self.fill(1)?;
        let line = self.ahead.pop_front();
        if let Some(l) = &line {
            self.pos += l.len() as u64;
            self.line_no += 1;
        }
        Ok(line)
    }

    fn peek(&mut self, i: usize) -> io::Result<Option<&[u8]>> {
        self.fill(i + 1)?;
        Ok(self.ahead.get(i).map(Vec::as_slice))
    }

    /// Skips `n` raw bytes at the start; returns how many there were.
    fn skip(&mut self, n: u64) -> io::Result<u64> {
        let skipped = io::copy(&mut (&mut self.reader).take(n), &mut io::sink())?;
        self.pos += skipped;
        Ok(skipped)
    }
}

/// The verifier's walk along the chain.
struct Walk<'k> {
    /// `k_seq`, derived from `k_0` by the verifier itself.
    key: &'k mut Key,
    /// The next seal number expected.
    seq: u64,
    /// SHA-256 of the last seal line.
    prev: Hash32,
    /// Running hash at the last seal.
    hash: Hash32,
    /// The file number expected for the next file with seals.
    fileno: u64,
    /// Whether any seal was seen yet.
    started: bool,
}

/// Checks `logs` (the rotated files in order, oldest first, each with its
/// `<log>.seal` beside it, the current file last) against their seals, with
/// the verification key `k_0`. Every seal `i` is checked with the `k_i` the
/// verifier derives itself, seals must be consecutive from 0, and every
/// sealed byte is rehashed.
///
/// # Errors
///
/// The first [`Failure`], located by file and line.
pub fn verify(key0: &Key, logs: &[PathBuf]) -> Result<Report, Failure> {
    let mut key = Key(key0.0.clone());
    let mut walk = Walk {
        key: &mut key,
        seq: 0,
        prev: ZERO,
        hash: ZERO,
        fileno: 0,
        started: false,
    };
    let mut report = Report::default();
    for (i, log) in logs.iter().enumerate() {
        walk.file(log, i + 1 == logs.len(), &mut report)?;
        report.files += 1;
    }
    Ok(report)
}

/// A seal file's lines, numbered from 1, and whether it ended in a torn line.
struct SealLines {
    /// (line number in the seal file, text).
    lines: Vec<(u64, String)>,
    /// The file ended in a partial line, ignored.
    torn: bool,
}

/// Reads the lines of the seal file `path` of `log`; `None` if it is missing.
fn read_records(log: &Path, path: &Path) -> Result<Option<SealLines>, Failure> {
    let fail = |problem| Failure {
        file: log.to_path_buf(),
        line: 0,
        problem,
    };
    let (lines, torn) = match read_sidecar(path) {
        Ok(Some(x)) => x,
        Ok(None) => return Ok(None),
        Err(e) => {
            return Err(fail(Problem::Unreadable {
                path: path.to_path_buf(),
                why: e.to_string(),
            }))
        }
    };
    let lines = lines
        .into_iter()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l))
        .collect();
    Ok(Some(SealLines {
        lines,
        torn: !torn.is_empty(),
    }))
}

/// Where the walk stands in one file.
#[derive(Default)]
struct InFile {
    /// Bytes of the file covered by the seals checked so far.
    sealed_len: u64,
    /// Lines of the file covered by them.
    sealed_lines: u64,
    /// Why and number of the last seal checked in this file.
    last: Option<(Why, u64)>,
    /// The file's `skip`, from its first seal.
    skip: Option<u64>,
    /// The file's number in the chain, from its first seal.
    fileno: Option<u64>,
}

/// A [`Failure`] in `log` at `line`.
fn fail_at(log: &Path, line: u64, problem: Problem) -> Failure {
    Failure {
        file: log.to_path_buf(),
        line,
        problem,
    }
}

/// `path` (of `log`) could not be read.
fn unreadable(log: &Path, path: &Path, e: &io::Error) -> Failure {
    fail_at(
        log,
        0,
        Problem::Unreadable {
            path: path.to_path_buf(),
            why: e.to_string(),
        },
    )
}

impl Walk<'_> {
    fn file(&mut self, log: &Path, is_last: bool, report: &mut Report) -> Result<(), Failure> {
        let file = File::open(log).map_err(|e| unreadable(log, log, &e))?;
        let mut lines = LogLines {
            reader: BufReader::with_capacity(256 * 1024, file),
            ahead: VecDeque::new(),
            pos: 0,
            line_no: 0,
        };
        let sidecar = seal_path(log);
        let records = match read_records(log, &sidecar)? {
            Some(found) => {
                if found.torn {
                    report.torn.push(log.to_path_buf());
                }
                found.lines
            }
            None if is_last => Vec::new(),
            None => return Err(fail_at(log, 0, Problem::MissingSealFile(sidecar))),
        };
        let mut at = InFile::default();
        for (n, text) in &records {
            self.seal(log, &mut lines, &mut at, (*n, text), report)?;
        }
        self.tail(log, &mut lines, &at, report)?;
        if let Some(n) = at.fileno {
            self.fileno = n + 1;
        }
        Ok(())
    }

    /// Checks one seal line (number `n` of the seal file) and the lines it
    /// adds, then moves the walk past it.
    fn seal(
        &mut self,
        log: &Path,
        lines: &mut LogLines,
        at: &mut InFile,
        (n, text): (u64, &str),
        report: &mut Report,
    ) -> Result<(), Failure> {
        let here = at.sealed_lines + 1;
        let record = Record::parse(text)
            .map_err(|e| fail_at(log, here, Problem::Malformed { at: n, why: e.0 }))?;
        self.authenticate(&record, at)
            .map_err(|p| fail_at(log, here, p))?;
        self.place(log, lines, at, &record, report)?;
        self.check_span(log, lines, &record, at.sealed_len, at.sealed_lines)?;
        if record.why == Why::Start && record.lines > at.sealed_lines {
            report.late.push(Span {
                file: log.to_path_buf(),
                first: at.sealed_lines + 1,
                last: record.lines,
            });
        }
        at.sealed_len = record.len;
        at.sealed_lines = record.lines;
        at.last = Some((record.why, record.seq));
        self.hash = record.hash;
        self.prev = sha256(text.as_bytes());
        self.seq += 1;
        self.key.advance();
        self.started = true;
        report.seals += 1;
        report.last_seal = Some(record.time);
        Ok(())
    }

    /// Whether `record` is the next seal of the chain, made with its own
    /// key, following the previous seal, in the right file.
    fn authenticate(&self, record: &Record, at: &InFile) -> Result<(), Problem> {
        let seq = record.seq;
        if let Some((Why::Rotate, _)) = at.last {
            return Err(Problem::SealAfterFinal { seq });
        }
        if seq != self.seq {
            return Err(if !self.started {
                Problem::NoStart { found: seq }
            } else if seq > self.seq {
                Problem::MissingSeal {
                    expected: self.seq,
                    found: seq,
                }
            } else {
                Problem::Reordered {
                    expected: self.seq,
                    found: seq,
                }
            });
        }
        // Authenticate before believing any field.
        if !record.verifies(self.key) {
            return Err(Problem::BadMac { seq });
        }
        if record.prev != self.prev {
            return Err(Problem::BrokenChain { seq });
        }
        let expected = at.fileno.unwrap_or(self.fileno);
        if record.fileno != expected {
            return Err(Problem::WrongFile {
                seq,
                found: record.fileno,
                expected,
            });
        }
        Ok(())
    }

    /// Checks that `record` extends the seals before it in this file; the
    /// file's first seal skips the bytes that were there before.
    fn place(
        &self,
        log: &Path,
        lines: &mut LogLines,
        at: &mut InFile,
        record: &Record,
        report: &mut Report,
    ) -> Result<(), Failure> {
        let seq = record.seq;
        let here = at.sealed_lines + 1;
        match at.skip {
            None => {
                let skipped = lines
                    .skip(record.skip)
                    .map_err(|e| unreadable(log, log, &e))?;
                if skipped < record.skip {
                    return Err(fail_at(
                        log,
                        1,
                        Problem::Truncated {
                            seq,
                            size: skipped,
                            len: record.len,
                            lines: record.lines,
                        },
                    ));
                }
                if record.skip > 0 {
                    report.skipped.push((log.to_path_buf(), record.skip));
                }
                at.sealed_len = record.skip;
                at.skip = Some(record.skip);
                at.fileno = Some(record.fileno);
            }
            Some(skip) if skip != record.skip => {
                return Err(fail_at(log, here, Problem::Backwards { seq }));
            }
            Some(_) => {}
        }
        if record.len < at.sealed_len || record.lines < at.sealed_lines {
            return Err(fail_at(log, here, Problem::Backwards { seq }));
        }
        Ok(())
    }

    /// Counts the lines after the file's last seal: the unsealed tail, or an
    /// error after a final seal.
    fn tail(
        &self,
        log: &Path,
        lines: &mut LogLines,
        at: &InFile,
        report: &mut Report,
    ) -> Result<(), Failure> {
        let mut tail = 0u64;
        while lines
            .next_line()
            .map_err(|e| unreadable(log, log, &e))?
            .is_some()
        {
            tail += 1;
        }
        if tail > 0 {
            if let Some((Why::Rotate, seq)) = at.last {
                return Err(fail_at(
                    log,
                    at.sealed_lines + 1,
                    Problem::AfterFinal { seq },
                ));
            }
            report.unsealed.push(Span {
                file: log.to_path_buf(),
                first: at.sealed_lines + 1,
                last: at.sealed_lines + tail,
            });
        }
        report.lines += at.sealed_lines + tail;
        Ok(())
    }

    /// Reads the lines `record` adds after (`from_len`, `from_lines`) and
    /// checks them; on a mismatch, finds the first bad line.
    fn check_span(
        &mut self,
        log: &Path,
        lines: &mut LogLines,
        record: &Record,
        from_len: u64,
        from_lines: u64,
    ) -> Result<(), Failure> {
        let read = read_span(lines, self.hash, record.lines - from_lines)
            .map_err(|e| unreadable(log, log, &e))?;
        if !read.short && read.bytes == record.len - from_len && read.hash == record.hash {
            return Ok(());
        }
        let (line, problem) =
            locate(lines, record, from_lines, &read).map_err(|e| unreadable(log, log, &e))?;
        Err(fail_at(log, line, problem))
    }
}

/// What [`read_span`] read.
struct SpanRead {
    /// Fingerprints of the lines read.
    crcs: Vec<u32>,
    /// Bytes read.
    bytes: u64,
    /// The file ended, or its last line had no newline, before `want` lines.
    short: bool,
    /// The running hash after them.
    hash: Hash32,
}

/// Reads up to `want` lines, hashing them onto `hash`.
fn read_span(lines: &mut LogLines, hash: Hash32, want: u64) -> io::Result<SpanRead> {
    let mut chain = Chain::new(hash);
    let mut read = SpanRead {
        crcs: Vec::new(),
        bytes: 0,
        short: false,
        hash,
    };
    for _ in 0..want {
        let Some(line) = lines.next_line()? else {
            read.short = true;
            break;
        };
        if !line.ends_with(b"\n") {
            read.short = true;
        }
        read.bytes += line.len() as u64;
        read.crcs.push(chain.line(&line));
    }
    read.hash = chain.hash;
    Ok(read)
}

/// The first line where the file differs from what `record` sealed, and
/// how (changed, inserted, removed, truncated), by its fingerprints; only
/// the seal's range without them.
fn locate(
    lines: &mut LogLines,
    record: &Record,
    from_lines: u64,
    read: &SpanRead,
) -> io::Result<(u64, Problem)> {
    let seq = record.seq;
    let truncated = Problem::Truncated {
        seq,
        size: lines.pos,
        len: record.len,
        lines: record.lines,
    };
    let differs = Problem::Differs {
        seq,
        first: from_lines + 1,
        last: record.lines,
    };
    let crcs = &read.crcs;
    let Some(fps) = &record.fps else {
        if read.short {
            return Ok((lines.line_no + 1, truncated));
        }
        return Ok((from_lines + 1, differs));
    };
    let first_bad = crcs
        .iter()
        .zip(fps.iter())
        .position(|(got, want)| got != want);
    Ok(match first_bad {
        // Only the last, partial line differs, or none: the file ends early.
        Some(k) if read.short && k + 1 == crcs.len() => (from_lines + k as u64 + 1, truncated),
        None if read.short => (lines.line_no + 1, truncated),
        Some(k) => {
            let at = from_lines + k as u64 + 1;
            // Look-ahead: the file's line after this one, which may lie
            // beyond this seal's span (still unread).
            let next_crc = match crcs.get(k + 1) {
                Some(c) => Some(*c),
                None => lines.peek(0)?.map(crc32fast::hash),
            };
            let problem = if fps.get(k + 1) == Some(&crcs[k]) {
                Problem::Removed { seq }
            } else if next_crc == Some(fps[k]) {
                Problem::Inserted { seq }
            } else {
                Problem::Changed { seq }
            };
            (at, problem)
        }
        None => (from_lines + 1, differs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::seal::state::State;
    use crate::audit::seal::testing::{append_open, problem, Rig};
    use std::io::Write;

    #[test]
    fn an_honest_run_verifies_and_the_key_on_disk_cannot_forge_written_seals() {
        let mut rig = Rig::new();
        rig.write(3);
        assert_eq!(rig.seal()[0].seq, 0);
        assert!(rig.seal().is_empty(), "no new lines, no interval seal");
        rig.write(2);
        rig.seal();
        rig.shutdown();
        let report = rig.verify().unwrap();
        assert_eq!((report.files, report.lines, report.seals), (1, 5, 3));
        assert!(report.unsealed.is_empty() && report.late.is_empty());
        // The state now holds k_3: it verifies none of the written seals.
        let state = State::load(&rig.state).unwrap();
        assert_eq!(state.next_seq, 3);
        for line in rig.seal_lines() {
            let r = Record::parse(&line).unwrap();
            assert!(!r.verifies(&state.key));
        }
        let mut k = Key(rig.key0.0.clone());
        for _ in 0..3 {
            k.advance();
        }
        assert_eq!(k.0.as_ref(), state.key.0.as_ref());
    }

    #[test]
    fn a_changed_byte_is_located_at_its_line() {
        let mut rig = Rig::new();
        rig.write(4);
        rig.seal();
        rig.write(4);
        rig.shutdown();
        let mut lines = rig.log_lines();
        lines[5] = lines[5].replace(" T ", " F ");
        rig.set_log_lines(&lines);
        assert_eq!(problem(rig.verify()), (6, Problem::Changed { seq: 1 }));
    }

    #[test]
    fn removed_and_inserted_lines_are_located() {
        let mut rig = Rig::new();
        rig.write(4);
        rig.seal();
        rig.write(4);
        rig.shutdown();
        let honest = rig.log_lines();
        let mut lines = honest.clone();
        lines.remove(2);
        rig.set_log_lines(&lines);
        assert_eq!(problem(rig.verify()), (3, Problem::Removed { seq: 0 }));
        // The last line of a seal's span: the next one moves up into it.
        let mut lines = honest.clone();
        lines.remove(3);
        rig.set_log_lines(&lines);
        assert_eq!(problem(rig.verify()), (4, Problem::Changed { seq: 0 }));
        let mut lines = honest.clone();
        lines.insert(
            6,
            "2026-11-23T19:14:17.999999Z 127.0.0.1:1 T '4' is a prime number\n".into(),
        );
        rig.set_log_lines(&lines);
        assert_eq!(problem(rig.verify()), (7, Problem::Inserted { seq: 1 }));
    }

    #[test]
    fn truncation_is_located_whether_at_a_line_end_or_inside_a_line() {
        let mut rig = Rig::new();
        rig.write(5);
        rig.shutdown();
        let honest = std::fs::read(&rig.log).unwrap();
        let lines = rig.log_lines();
        let three = lines[..3].concat().len();
        std::fs::write(&rig.log, &honest[..three]).unwrap();
        let (line, p) = problem(rig.verify());
        assert_eq!(line, 4);
        assert!(
            matches!(
                p,
                Problem::Truncated {
                    seq: 0,
                    lines: 5,
                    ..
                }
            ),
            "{p:?}"
        );
        std::fs::write(&rig.log, &honest[..three + 10]).unwrap();
        let (line, p) = problem(rig.verify());
        assert_eq!(line, 4);
        assert!(matches!(p, Problem::Truncated { seq: 0, .. }), "{p:?}");
    }

    #[test]
    fn removed_reordered_forged_and_foreign_key_seals_are_caught() {
        let mut rig = Rig::new();
        for _ in 0..4 {
            rig.write(2);
            rig.seal();
        }
        rig.shutdown();
        let honest = rig.seal_lines();
        assert_eq!(honest.len(), 5);
        let mut seals = honest.clone();
        seals.remove(1);
        rig.set_seal_lines(&seals);
        assert_eq!(
            problem(rig.verify()),
            (
                3,
                Problem::MissingSeal {
                    expected: 1,
                    found: 2
                }
            )
        );
        let mut seals = honest.clone();
        seals.swap(1, 2);
        rig.set_seal_lines(&seals);
        assert_eq!(
            problem(rig.verify()),
            (
                3,
                Problem::MissingSeal {
                    expected: 1,
                    found: 2
                }
            )
        );
        let mut seals = honest.clone();
        seals.insert(2, honest[1].clone());
        rig.set_seal_lines(&seals);
        assert_eq!(
            problem(rig.verify()),
            (
                5,
                Problem::Reordered {
                    expected: 2,
                    found: 1
                }
            )
        );
        // An edited field, the MAC left as it was.
        let mut seals = honest.clone();
        seals[2] = seals[2].replace(" lines=6 ", " lines=5 ");
        rig.set_seal_lines(&seals);
        assert_eq!(problem(rig.verify()), (5, Problem::BadMac { seq: 2 }));
        // The first seal alone is gone: the chain does not start.
        rig.set_seal_lines(&honest[1..]);
        assert_eq!(problem(rig.verify()), (1, Problem::NoStart { found: 1 }));
        // A whole chain made with another key.
        rig.set_seal_lines(&honest);
        let other = Key::generate().unwrap();
        let p = verify(&other, std::slice::from_ref(&rig.log));
        assert_eq!(problem(p), (1, Problem::BadMac { seq: 0 }));
        assert!(rig.verify().is_ok());
    }

    /// CVE-2023-31439: a seal must be checked with its own epoch's key. Seal
    /// 2 re-made (correctly otherwise) with k_3 is refused, as is one made
    /// with k_1.
    #[test]
    fn a_seal_made_with_a_neighbouring_epochs_key_is_refused() {
        let mut rig = Rig::new();
        for _ in 0..3 {
            rig.write(1);
            rig.seal();
        }
        rig.shutdown();
        let honest = rig.seal_lines();
        let k1 = rig.key0.step();
        let k3 = k1.step().step();
        for key in [&k1, &k3] {
            let mut r = Record::parse(&honest[2]).unwrap();
            r.sign(key);
            let mut seals = honest.clone();
            seals[2] = r.to_line();
            rig.set_seal_lines(&seals);
            assert_eq!(problem(rig.verify()), (3, Problem::BadMac { seq: 2 }));
        }
    }

    #[test]
    fn without_fingerprints_a_mismatch_is_located_to_the_seals_range() {
        let mut rig = Rig::new();
        rig.write(3);
        rig.tracker.fps_overflow = true;
        rig.seal();
        rig.shutdown();
        assert!(rig.seal_lines()[0].contains(" fp=- "));
        let mut lines = rig.log_lines();
        lines[1] = lines[1].replace(" T ", " F ");
        rig.set_log_lines(&lines);
        assert_eq!(
            problem(rig.verify()),
            (
                1,
                Problem::Differs {
                    seq: 0,
                    first: 1,
                    last: 3
                }
            )
        );
    }

    #[test]
    fn a_torn_last_seal_record_is_ignored_and_reported() {
        let mut rig = Rig::new();
        rig.write(2);
        rig.seal();
        let mut f = append_open(&seal_path(&rig.log));
        f.write_all(b"seal v1 seq=1 fileno=0 why=int").unwrap();
        let report = rig.verify().unwrap();
        assert_eq!(report.torn, vec![rig.log.clone()]);
        assert!(report
            .to_string()
            .contains("ends in a torn seal record (ignored)"));
    }
}
