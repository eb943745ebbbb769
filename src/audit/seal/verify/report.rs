//! What `verify` says: the [`Problem`] it found and where ([`Failure`]), or
//! what it vouched for ([`Report`]).

use super::super::files::seal_path;
use std::fmt;
use std::path::PathBuf;
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
    /// A file given is not a regular file (exit status 2).
    #[error("{} is {kind}, not a regular file: refusing to read it", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
        /// What it is.
        kind: &'static str,
    },
    /// A line longer than the verifier reads.
    #[error("a line longer than {max} bytes: not an audit line (nor a seal)")]
    LineTooLong {
        /// The limit.
        max: usize,
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
    /// No seal at all in the files given.
    #[error("no seal at all: nothing here is vouched for (the seal files were removed, or sealing never ran)")]
    NoSeal,
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
    /// The seal's time is before the key schedule starts.
    #[error("seal {seq} is timed {time}, before the key's first epoch")]
    BeforeStart {
        /// The seal.
        seq: u64,
        /// Its time.
        time: String,
    },
    /// The seal's `epoch` is not the epoch of its time.
    #[error("seal {seq} claims key epoch {claimed}, but its time {time} lies in epoch {actual}")]
    WrongEpoch {
        /// The seal.
        seq: u64,
        /// Its `epoch` field.
        claimed: u64,
        /// The epoch of its time.
        actual: u64,
        /// Its time.
        time: String,
    },
    /// Seal times or key positions go back.
    #[error("seal {seq} is timed {time}, before seal {before} ({before_time}), or reuses its key: seals must move forward in time")]
    TimeBackwards {
        /// The seal.
        seq: u64,
        /// Its time.
        time: String,
        /// The seal before it.
        before: u64,
        /// That seal's time.
        before_time: String,
    },
    /// A seal timed after `--until`.
    #[error("seal {seq} is timed {time}, after {until} (--until): seals from the future are forged or the clock is wrong")]
    Future {
        /// The seal.
        seq: u64,
        /// Its time.
        time: String,
        /// The `--until` time.
        until: String,
    },
    /// The MAC does not verify with the key of its epoch.
    #[error("seal {seq} was not made with the key for its epoch and place: forged, altered, or sealed with another key")]
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
    /// A heartbeat that does not vouch for what the seal before it did.
    #[error("heartbeat seal {seq} does not follow a seal of the same file ending where it says")]
    BadBeat {
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
    /// A sealed line has no timestamp.
    #[error("sealed by seal {seq}, but not an audit line: no RFC 3339 time at its start")]
    NoTimestamp {
        /// The seal covering it.
        seq: u64,
    },
    /// A line timestamped after the seal that covers it: the seal was
    /// backdated (made later than it says).
    #[error("line timestamped {line_time}, after seal {seq} that covers it ({seal_time}): the seal is backdated")]
    LineAfterSeal {
        /// The seal.
        seq: u64,
        /// The line's time.
        line_time: String,
        /// The seal's time.
        seal_time: String,
    },
    /// A line timestamped well before the seal preceding it: written (or
    /// added) long after its time.
    #[error("line timestamped {line_time}, sealed late: the seal before it ({before_time}) did not cover it, so it was written after its time (backdated)")]
    SealedLate {
        /// The line's time.
        line_time: String,
        /// The time of the seal before the one covering it.
        before_time: String,
    },
    /// Lines after a file's final seal.
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
    /// A file (not the last) whose last seal does not close it.
    #[error("the file ends without its final seal (its last seal is {seq}): seals were removed from its end, or the files are out of order")]
    NotFinal {
        /// Its last seal, if any.
        seq: u64,
    },
    /// No seal for longer than two heartbeats, with no clean stop.
    #[error("gap: no seal between seal {from} ({from_time}) and seal {to} ({to_time}), {seconds} s, more than two heartbeats ({allowed_ms} ms), and no shutdown and start seal around it")]
    Gap {
        /// The seal before the gap.
        from: u64,
        /// Its time.
        from_time: String,
        /// The seal after it.
        to: u64,
        /// Its time.
        to_time: String,
        /// The gap, in whole seconds.
        seconds: u64,
        /// The gap allowed.
        allowed_ms: u64,
    },
    /// A seal other than a start seal right after a shutdown seal.
    #[error("seal {seq} follows the shutdown seal {after} without a start seal")]
    AfterShutdown {
        /// The seal.
        seq: u64,
        /// The shutdown seal.
        after: u64,
    },
    /// A restart after a crash (or after seals were removed).
    #[error("the server restarted (seal {seq}, {time}) after seal {after} ({after_time}) without a shutdown seal: a crash, or seals removed (--allow-crash accepts crashes)")]
    CrashRestart {
        /// The start seal.
        seq: u64,
        /// Its time.
        time: String,
        /// The seal before it.
        after: u64,
        /// That seal's time.
        after_time: String,
    },
    /// Lines the server did not see written: on disk before sealing began,
    /// or added while it was stopped after a clean stop.
    #[error("lines {first}-{last} were found on disk at start-up (seal {seq}), not seen written: before sealing began, or added while the server was stopped (--allow-preexisting accepts them)")]
    Preexisting {
        /// The start seal.
        seq: u64,
        /// First line.
        first: u64,
        /// Last line.
        last: u64,
    },
    /// Bytes a file held when the server opened it.
    #[error("the file starts with {bytes} bytes that were there before the server opened it, not sealed (--allow-preexisting accepts them)")]
    SkippedBytes {
        /// How many.
        bytes: u64,
    },
    /// Lines after the chain's last seal.
    #[error("lines {first}-{last} are not sealed: a crash, or seals removed from the end (--allow-unsealed-tail accepts them)")]
    UnsealedTail {
        /// First unsealed line.
        first: u64,
        /// Last unsealed line.
        last: u64,
    },
    /// The chain ends in a file's final seal: the next file was not given.
    #[error("the chain goes on in a file not given: seal {seq} ({time}) closed this file (give the newer files too)")]
    ChainContinues {
        /// The final seal.
        seq: u64,
        /// Its time.
        time: String,
    },
    /// The chain's end is not vouched for.
    #[error("the chain ends at seal {seq} ({time}), which is not a shutdown seal and is more than two heartbeats ({allowed_ms} ms) before {until}: the end was cut, or the server died (--allow-unsealed-tail accepts it)")]
    EndCut {
        /// The last seal.
        seq: u64,
        /// Its time.
        time: String,
        /// The `--until` time.
        until: String,
        /// The slack allowed.
        allowed_ms: u64,
    },
    /// The shipped copy holds more of the chain than the local files.
    #[error("the collector's copy holds seals up to {shipped} ({time}), the local chain ends at {local}: the local files were cut or rolled back")]
    ShippedLonger {
        /// The last shipped seal.
        shipped: u64,
        /// Its time.
        time: String,
        /// The last local seal (none: -1 shown as none).
        local: String,
    },
    /// A local seal differs from the shipped one with its number.
    #[error("seal {seq} differs from the copy shipped to the collector: the local chain was rolled back or forged")]
    ShippedDiffers {
        /// The seal.
        seq: u64,
    },
    /// The shipped copy itself forks: one number, two seals.
    #[error("the collector's copy (line {at}) holds seal {seq} again with other contents, or goes back: the chain was rolled back and resumed")]
    ShippedFork {
        /// The seal number.
        seq: u64,
        /// The line in the collector's file.
        at: u64,
    },
}

impl Problem {
    /// `prime-audit verify`'s exit status for it: 2 for a file that is not
    /// a regular file (refused, not judged), 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Problem::NotRegular { .. } => 2,
            _ => 1,
        }
    }
}

/// The first problem [`verify`](super::verify) found, located in a file and line.
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

/// How the chain's end is vouched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum End {
    /// No seal (only with nothing else to say: never in a report).
    #[default]
    None,
    /// A shutdown seal: the server stopped cleanly.
    Shutdown,
    /// A seal within two heartbeats of `--until`: a live log.
    Live,
    /// Neither, accepted by `--allow-unsealed-tail`.
    Accepted,
}

/// What the collector's copy held ([`Report::shipped`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShippedSummary {
    /// Seals of this chain found in it.
    pub seals: u64,
    /// The local seals that had a shipped copy (all equal).
    pub matched: u64,
    /// Lines that looked like seals but are not of this chain (another
    /// server's, or forged), ignored.
    pub ignored: u64,
}

/// What a successful [`verify`](super::verify) checked, and what it was told
/// to accept.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// Log files checked.
    pub files: usize,
    /// Lines in them.
    pub lines: u64,
    /// Seals checked.
    pub seals: u64,
    /// Heartbeat seals among them.
    pub heartbeats: u64,
    /// Time of the first seal, as written.
    pub first_seal: Option<String>,
    /// Time of the last seal, as written.
    pub last_seal: Option<String>,
    /// How the end is vouched for.
    pub end: End,
    /// Clean restarts (a shutdown seal, then a start seal).
    pub restarts: u64,
    /// Restarts after a crash, accepted by `--allow-crash`: (start seal,
    /// its time).
    pub crashes: Vec<(u64, String)>,
    /// Lines no seal covers, accepted by `--allow-unsealed-tail`.
    pub unsealed: Vec<Span>,
    /// Lines sealed only at start-up (found on disk, not seen written),
    /// accepted by `--allow-crash` or `--allow-preexisting`.
    pub late: Vec<Span>,
    /// Files whose first bytes were there when the server opened them, and
    /// are not sealed, accepted by `--allow-preexisting`: (file, bytes).
    pub skipped: Vec<(PathBuf, u64)>,
    /// Seal files ending in a torn (partial) record, ignored.
    pub torn: Vec<PathBuf>,
    /// The collector's copy, when one was given.
    pub shipped: Option<ShippedSummary>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ok: {} file{}, {} line{}, {} seal{} ({} heartbeat{})",
            self.files,
            plural(self.files as u64),
            self.lines,
            plural(self.lines),
            self.seals,
            plural(self.seals),
            self.heartbeats,
            plural(self.heartbeats),
        )?;
        if let (Some(from), Some(to)) = (&self.first_seal, &self.last_seal) {
            write!(f, ", validated from {from} to {to}")?;
        }
        match self.end {
            End::Shutdown => write!(f, " (ended by a shutdown seal)")?,
            End::Live => write!(f, " (live: the last seal is recent)")?,
            End::Accepted => write!(
                f,
                " (END NOT VOUCHED FOR: accepted by --allow-unsealed-tail)"
            )?,
            End::None => {}
        }
        if self.restarts > 0 {
            write!(
                f,
                ", {} clean restart{}",
                self.restarts,
                plural(self.restarts)
            )?;
        }
        if let Some(s) = &self.shipped {
            write!(
                f,
                "; collector's copy: {} seal{} of this chain, {} matched, none missing locally",
                s.seals,
                plural(s.seals),
                s.matched
            )?;
            if s.ignored > 0 {
                write!(
                    f,
                    ", {} other seal line{} ignored",
                    s.ignored,
                    plural(s.ignored)
                )?;
            }
        }
        if self.unsealed.is_empty() {
            write!(f, "; unsealed tail: none")?;
        } else {
            let spans: Vec<String> = self.unsealed.iter().map(Span::to_string).collect();
            write!(f, "; UNSEALED (not verified): {}", spans.join(", "))?;
        }
        for (seq, time) in &self.crashes {
            write!(f, "; restart after a CRASH at seal {seq} ({time})")?;
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
