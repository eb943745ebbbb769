//! `prime-audit verify`: walks the chain over the given files and says 0
//! only when every byte is vouched for.
//!
//! Strict by default. Exit 0 needs: every line covered by a seal made with
//! the key of its epoch, timed inside that epoch and not before the line's
//! own timestamp; seals moving forward in time with no gap longer than two
//! heartbeats unless a shutdown seal and a start seal bracket it; every file
//! but the last closed by its final seal, the last one not (the chain does
//! not go on into a file not given); and the end vouched for by a shutdown
//! seal or a seal within two heartbeats of `--until`. [`Options`] accept
//! known situations explicitly (a crash, lines from before sealing), and
//! `--seals-from` compares the chain with the collector's copy.

mod input;
mod report;
mod shipped;

pub use input::MAX_LOG_LINE;
pub use report::{End, Failure, Problem, Report, ShippedSummary, Span};

use super::chain::Chain;
use super::files::seal_path;
use super::key::{micros, sha256, Hash32, Schedule, VerifyKey, ZERO};
use super::ratchet::Ratchet;
use super::record::{FpLine, Record, Why};
use input::{LogLines, SealFile, SealLine};
use shipped::Shipped;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long before the seal preceding it a line may be timestamped and
/// still count as written on time (it was formatted before that seal's cut
/// and written just after it).
pub const LATE_SLACK: Duration = Duration::from_secs(10);

/// What [`verify`] accepts beyond the strict default, and against what.
#[derive(Debug, Clone)]
pub struct Options {
    /// The time up to which the chain must be vouched for (`--until`,
    /// `now` by default): a chain not ended by a shutdown seal needs a seal
    /// within two heartbeats of it; a seal after it is refused.
    pub until: SystemTime,
    /// Accept lines after the chain's last seal, and an end not vouched
    /// for (what `kill -9` leaves until the server restarts).
    pub allow_unsealed_tail: bool,
    /// Accept restarts after a crash: a start seal after a seal that is
    /// not a shutdown seal, and the lines it sealed late.
    pub allow_crash: bool,
    /// Accept lines the server found on disk rather than saw written:
    /// before sealing began, or added while it was stopped cleanly; and
    /// bytes a file held before the server opened it.
    pub allow_preexisting: bool,
    /// The collector's copy of the shipped seals (`--seals-from`).
    pub seals_from: Option<PathBuf>,
}

impl Options {
    /// Strict, vouching up to `until`.
    pub fn strict(until: SystemTime) -> Options {
        Options {
            until,
            allow_unsealed_tail: false,
            allow_crash: false,
            allow_preexisting: false,
            seals_from: None,
        }
    }
}

/// The last seal checked, for the rules between consecutive seals.
#[derive(Debug, Clone)]
struct LastSeal {
    seq: u64,
    why: Why,
    time: String,
    time_us: u64,
    epoch: u64,
    sub: u64,
}

/// The verifier's walk along the chain.
struct Walk<'o> {
    /// What is accepted.
    options: &'o Options,
    /// The key epochs.
    schedule: Schedule,
    /// The keys, derived from `K_0` by the verifier itself.
    ratchet: Ratchet,
    /// The next seal number expected.
    seq: u64,
    /// SHA-256 of the last seal line.
    prev: Hash32,
    /// Running hash at the last seal.
    hash: Hash32,
    /// The file number expected for the next file with seals.
    fileno: u64,
    /// The last seal checked.
    last: Option<LastSeal>,
    /// The run's heartbeat, from its last full record (milliseconds).
    beat_ms: u64,
    /// The collector's copy, when given.
    shipped: Option<Shipped>,
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

/// `t_us` (microseconds) as RFC 3339.
fn rfc3339(t_us: u64) -> String {
    humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_micros(t_us)).to_string()
}

/// Checks `logs` (the rotated files in order, oldest first, each with its
/// `<log>.seal` beside it, the current file last) against their seals with
/// the verification key, under `options`.
///
/// # Errors
///
/// The first [`Failure`], located by file and line.
pub fn verify(key: &VerifyKey, logs: &[PathBuf], options: &Options) -> Result<Report, Failure> {
    let first = logs.first().cloned().unwrap_or_default();
    let shipped = match &options.seals_from {
        Some(path) => Some(Shipped::open(path, key).map_err(|p| fail_at(path, 0, p))?),
        None => None,
    };
    let mut walk = Walk {
        options,
        schedule: key.schedule,
        ratchet: Ratchet::from_seed(&key.seed),
        seq: 0,
        prev: ZERO,
        hash: ZERO,
        fileno: 0,
        last: None,
        beat_ms: 0,
        shipped,
    };
    let mut report = Report::default();
    let mut last_file = first;
    for (i, log) in logs.iter().enumerate() {
        let at = walk.file(log, i + 1 == logs.len(), &mut report)?;
        report.files += 1;
        if i + 1 < logs.len() && !at.last.is_some_and(|(why, _)| why.is_final()) {
            let seq = at.last.map_or(0, |(_, seq)| seq);
            return Err(fail_at(log, 0, Problem::NotFinal { seq }));
        }
        last_file.clone_from(log);
    }
    walk.finish(&last_file, &mut report)?;
    Ok(report)
}

impl Walk<'_> {
    /// Checks one file and its seals; returns where its seals ended.
    fn file(&mut self, log: &Path, is_last: bool, report: &mut Report) -> Result<InFile, Failure> {
        let file = input::open(log, false)
            .map_err(|p| fail_at(log, 0, p))?
            .ok_or_else(|| fail_at(log, 0, Problem::NoSeal))?;
        let mut lines = LogLines::new(log, file);
        let sidecar = seal_path(log);
        let mut seals = match input::open(&sidecar, true).map_err(|p| fail_at(log, 0, p))? {
            Some(f) => Some(SealFile::new(&sidecar, f)),
            None if is_last => None,
            None => return Err(fail_at(log, 0, Problem::MissingSealFile(sidecar))),
        };
        let mut at = InFile::default();
        if let Some(seals) = seals.as_mut() {
            loop {
                let next = seals
                    .next()
                    .map_err(|(n, p)| fail_at(log, at.sealed_lines + 1, with_at(p, n)))?;
                let Some(seal) = next else { break };
                self.seal(log, &mut lines, &mut at, &seal, report)?;
            }
            if seals.torn {
                report.torn.push(log.to_path_buf());
            }
        }
        self.tail(log, &mut lines, &at, is_last, report)?;
        if let Some(n) = at.fileno {
            self.fileno = n + 1;
        }
        Ok(at)
    }

    /// Checks one seal line and the lines it adds, then moves the walk
    /// past it.
    fn seal(
        &mut self,
        log: &Path,
        lines: &mut LogLines,
        at: &mut InFile,
        seal: &SealLine,
        report: &mut Report,
    ) -> Result<(), Failure> {
        let here = at.sealed_lines + 1;
        let fail = |p| fail_at(log, here, p);
        let record = Record::parse(&seal.text).map_err(|e| {
            fail(Problem::Malformed {
                at: seal.at,
                why: e.0,
            })
        })?;
        self.authenticate(&record, at).map_err(fail)?;
        self.transition(&record, report).map_err(fail)?;
        self.place(lines, at, &record, report)
            .map_err(|(line, p)| fail_at(log, line, p))?;
        if record.why != Why::Beat {
            let fps = fingerprints(&record, seal.fp.as_ref());
            self.check_span(log, lines, &record, at, fps.as_deref())?;
        }
        self.late(log, &record, at, report).map_err(fail)?;
        let line_hash = sha256(seal.text.as_bytes());
        if let Some(shipped) = self.shipped.as_mut() {
            shipped.check(record.seq, &line_hash).map_err(fail)?;
        }
        if record.why != Why::Beat {
            at.sealed_len = record.len;
            at.sealed_lines = record.lines;
            self.hash = record.hash;
            self.beat_ms = record.beat_ms;
        } else {
            report.heartbeats += 1;
        }
        at.last = Some((record.why, record.seq));
        self.prev = line_hash;
        self.seq += 1;
        report.seals += 1;
        report.first_seal.get_or_insert_with(|| record.time.clone());
        report.last_seal = Some(record.time.clone());
        self.last = Some(LastSeal {
            seq: record.seq,
            why: record.why,
            time_us: record.time_us(),
            time: record.time,
            epoch: record.epoch,
            sub: record.sub,
        });
        Ok(())
    }

    /// Whether `record` is the next seal of the chain, timed in its key's
    /// epoch and after the seal before it, made with that key, following
    /// the previous seal, in the right file.
    fn authenticate(&mut self, record: &Record, at: &InFile) -> Result<(), Problem> {
        let seq = record.seq;
        if let Some((why, _)) = at.last {
            if why.is_final() {
                return Err(Problem::SealAfterFinal { seq });
            }
        }
        if seq != self.seq {
            return Err(if self.last.is_none() {
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
        self.check_time(record)?;
        // Authenticate before believing any other field.
        if !self.ratchet.check(
            record.epoch,
            record.sub,
            record.body().as_bytes(),
            &record.mac,
        ) {
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

    /// The seal's time lies in its epoch, after the seal before it (with a
    /// later key), and not after `--until`.
    fn check_time(&self, record: &Record) -> Result<(), Problem> {
        let seq = record.seq;
        let t = record.time_us();
        let Some(epoch) = self.schedule.epoch_of(t) else {
            return Err(Problem::BeforeStart {
                seq,
                time: record.time.clone(),
            });
        };
        if epoch != record.epoch {
            return Err(Problem::WrongEpoch {
                seq,
                claimed: record.epoch,
                actual: epoch,
                time: record.time.clone(),
            });
        }
        if let Some(last) = &self.last {
            if t < last.time_us || (record.epoch, record.sub) <= (last.epoch, last.sub) {
                return Err(Problem::TimeBackwards {
                    seq,
                    time: record.time.clone(),
                    before: last.seq,
                    before_time: last.time.clone(),
                });
            }
        }
        let slack = 2 * record.beat_ms.max(self.beat_ms) * 1000;
        let until = micros(self.options.until);
        if t > until.saturating_add(slack) {
            return Err(Problem::Future {
                seq,
                time: record.time.clone(),
                until: rfc3339(until),
            });
        }
        Ok(())
    }

    /// The rules between the last seal and this one: a restart needs a
    /// shutdown seal before it (or `--allow-crash`); otherwise no seal may
    /// follow a shutdown seal, and no gap may exceed two heartbeats.
    fn transition(&mut self, b: &Record, report: &mut Report) -> Result<(), Problem> {
        let Some(a) = &self.last else { return Ok(()) };
        if b.why.is_start_up() {
            if a.why == Why::Shutdown || a.why.is_start_up() {
                if b.why == Why::Start && a.why == Why::Shutdown {
                    report.restarts += 1;
                }
                return Ok(());
            }
            if !self.options.allow_crash {
                return Err(Problem::CrashRestart {
                    seq: b.seq,
                    time: b.time.clone(),
                    after: a.seq,
                    after_time: a.time.clone(),
                });
            }
            if b.why == Why::Start || !report.crashes.iter().any(|(s, _)| *s + 1 == b.seq) {
                report.crashes.push((b.seq, b.time.clone()));
            }
            return Ok(());
        }
        if a.why == Why::Shutdown {
            return Err(Problem::AfterShutdown {
                seq: b.seq,
                after: a.seq,
            });
        }
        let gap = b.time_us() - a.time_us;
        let allowed_ms = 2 * self.beat_ms;
        if gap > allowed_ms * 1000 {
            return Err(Problem::Gap {
                from: a.seq,
                from_time: a.time.clone(),
                to: b.seq,
                to_time: b.time.clone(),
                seconds: gap / 1_000_000,
                allowed_ms,
            });
        }
        Ok(())
    }

    /// Checks that `record` extends the seals before it in this file; the
    /// file's first seal skips the bytes that were there before. Problems
    /// come with their line.
    fn place(
        &self,
        lines: &mut LogLines,
        at: &mut InFile,
        record: &Record,
        report: &mut Report,
    ) -> Result<(), (u64, Problem)> {
        let seq = record.seq;
        let here = at.sealed_lines + 1;
        if record.why == Why::Beat {
            if at.skip.is_none() || record.len != at.sealed_len {
                return Err((here, Problem::BadBeat { seq }));
            }
            return Ok(());
        }
        match at.skip {
            None => {
                let skipped = lines.skip(record.skip).map_err(|p| (0, p))?;
                if skipped < record.skip {
                    return Err((
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
                    if !self.options.allow_preexisting {
                        return Err((1, Problem::SkippedBytes { bytes: record.skip }));
                    }
                    report.skipped.push((lines_path(lines), record.skip));
                }
                at.sealed_len = record.skip;
                at.skip = Some(record.skip);
                at.fileno = Some(record.fileno);
            }
            Some(skip) if skip != record.skip => return Err((here, Problem::Backwards { seq })),
            Some(_) => {}
        }
        if record.len < at.sealed_len || record.lines < at.sealed_lines {
            return Err((here, Problem::Backwards { seq }));
        }
        Ok(())
    }

    /// Lines a start-up seal sealed late: after a crash (accepted with
    /// `--allow-crash`, checked by [`Walk::transition`]), or found after a
    /// clean stop or before sealing began (`--allow-preexisting`).
    fn late(
        &self,
        log: &Path,
        record: &Record,
        at: &InFile,
        report: &mut Report,
    ) -> Result<(), Problem> {
        if !record.why.is_start_up() || record.lines <= at.sealed_lines {
            return Ok(());
        }
        let clean = self.last.as_ref().is_none_or(|a| a.why == Why::Shutdown);
        if clean && !self.options.allow_preexisting {
            return Err(Problem::Preexisting {
                seq: record.seq,
                first: at.sealed_lines + 1,
                last: record.lines,
            });
        }
        report.late.push(Span {
            file: log.to_path_buf(),
            first: at.sealed_lines + 1,
            last: record.lines,
        });
        Ok(())
    }

    /// Counts the lines after the file's last seal: an error after a final
    /// seal; in the last file, the unsealed tail.
    fn tail(
        &self,
        log: &Path,
        lines: &mut LogLines,
        at: &InFile,
        is_last: bool,
        report: &mut Report,
    ) -> Result<(), Failure> {
        let mut tail = 0u64;
        while lines
            .next_line()
            .map_err(|p| fail_at(log, at.sealed_lines + tail + 1, p))?
            .is_some()
        {
            tail += 1;
        }
        report.lines += at.sealed_lines + tail;
        if tail == 0 {
            return Ok(());
        }
        let first = at.sealed_lines + 1;
        if let Some((why, seq)) = at.last {
            if why.is_final() {
                return Err(fail_at(log, first, Problem::AfterFinal { seq }));
            }
        }
        let last = at.sealed_lines + tail;
        if !is_last {
            let seq = at.last.map_or(0, |(_, s)| s);
            return Err(fail_at(log, first, Problem::NotFinal { seq }));
        }
        if !self.options.allow_unsealed_tail {
            return Err(fail_at(log, first, Problem::UnsealedTail { first, last }));
        }
        report.unsealed.push(Span {
            file: log.to_path_buf(),
            first,
            last,
        });
        Ok(())
    }

    /// The end of the chain: some seal, not a final one, vouched for by a
    /// shutdown seal or a recent seal; the collector's copy no longer.
    fn finish(&mut self, log: &Path, report: &mut Report) -> Result<(), Failure> {
        let fail = |p| fail_at(log, 0, p);
        let last_seq = self.last.as_ref().map(|l| l.seq);
        if let Some(shipped) = self.shipped.take() {
            report.shipped = Some(shipped.finish(last_seq).map_err(fail)?);
        }
        let Some(last) = &self.last else {
            return Err(fail(Problem::NoSeal));
        };
        if last.why.is_final() {
            return Err(fail(Problem::ChainContinues {
                seq: last.seq,
                time: last.time.clone(),
            }));
        }
        let until = micros(self.options.until);
        let allowed_ms = 2 * self.beat_ms;
        report.end = if last.why == Why::Shutdown {
            End::Shutdown
        } else if until <= last.time_us + allowed_ms * 1000 {
            End::Live
        } else if self.options.allow_unsealed_tail {
            End::Accepted
        } else {
            return Err(fail(Problem::EndCut {
                seq: last.seq,
                time: last.time.clone(),
                until: rfc3339(until),
                allowed_ms,
            }));
        };
        Ok(())
    }

    /// Reads the lines `record` adds after what `at` covers and checks
    /// them: the running hash, then each line's time; on a mismatch, finds
    /// the first bad line with the fingerprints.
    fn check_span(
        &mut self,
        log: &Path,
        lines: &mut LogLines,
        record: &Record,
        at: &InFile,
        fps: Option<&[u32]>,
    ) -> Result<(), Failure> {
        let from_lines = at.sealed_lines;
        let window = Window {
            seal_us: record.time_us(),
            not_before_us: (!record.why.is_start_up())
                .then(|| self.last.as_ref().map(|l| l.time_us))
                .flatten()
                .map(|t| t.saturating_sub(u64::try_from(LATE_SLACK.as_micros()).unwrap_or(0))),
        };
        let want = record.lines - from_lines;
        let read = read_span(lines, self.hash, want, fps.is_some(), &window)
            .map_err(|p| fail_at(log, lines.line_no + 1, p))?;
        let intact =
            !read.short && read.bytes == record.len - at.sealed_len && read.hash == record.hash;
        if !intact {
            let (line, problem) = locate(lines, record, from_lines, &read, fps)
                .map_err(|p| fail_at(log, lines.line_no + 1, p))?;
            return Err(fail_at(log, line, problem));
        }
        if let Some((k, problem)) = read.untimely {
            let problem = problem.into_problem(record, self.last.as_ref());
            return Err(fail_at(log, from_lines + k + 1, problem));
        }
        Ok(())
    }
}

/// The fingerprints of a seal's lines, from the fingerprint line before it
/// when that line is the one the seal authenticates.
fn fingerprints(record: &Record, fp: Option<&(u64, String)>) -> Option<Vec<u32>> {
    let want = record.fp?;
    let (seq, digits) = fp?;
    (*seq == record.seq && sha256(digits.as_bytes()) == want)
        .then(|| FpLine::decode(digits))
        .flatten()
}

/// The path of the log being read (for the report).
fn lines_path(lines: &LogLines) -> PathBuf {
    lines.path().to_path_buf()
}

/// When a seal's lines may be timestamped.
struct Window {
    /// The seal's time: no line after it.
    seal_us: u64,
    /// The seal before it, less [`LATE_SLACK`]: no line before it (none
    /// for a start-up seal, whose lines are late by nature).
    not_before_us: Option<u64>,
}

/// A line's time out of its seal's window.
#[derive(Debug, Clone, Copy)]
enum Untimely {
    /// No timestamp.
    Missing,
    /// After the seal: (line time).
    AfterSeal(u64),
    /// Before the seal before: (line time).
    Late(u64),
}

impl Untimely {
    fn into_problem(self, record: &Record, before: Option<&LastSeal>) -> Problem {
        match self {
            Untimely::Missing => Problem::NoTimestamp { seq: record.seq },
            Untimely::AfterSeal(t) => Problem::LineAfterSeal {
                seq: record.seq,
                line_time: rfc3339(t),
                seal_time: record.time.clone(),
            },
            Untimely::Late(t) => Problem::SealedLate {
                line_time: rfc3339(t),
                before_time: before.map_or_else(String::new, |b| b.time.clone()),
            },
        }
    }
}

/// Checks a line's leading timestamp against the window.
fn timely(line: &[u8], window: &Window) -> Result<(), Untimely> {
    let word = line.split(|&b| b == b' ').next().unwrap_or_default();
    let t = std::str::from_utf8(word)
        .ok()
        .and_then(|w| humantime::parse_rfc3339(w).ok())
        .map(micros)
        .ok_or(Untimely::Missing)?;
    if t > window.seal_us {
        return Err(Untimely::AfterSeal(t));
    }
    if window.not_before_us.is_some_and(|nb| t < nb) {
        return Err(Untimely::Late(t));
    }
    Ok(())
}

/// What [`read_span`] read.
struct SpanRead {
    /// Fingerprints of the lines read (only when the seal has some).
    crcs: Vec<u32>,
    /// Bytes read.
    bytes: u64,
    /// The file ended, or its last line had no newline, before `want` lines.
    short: bool,
    /// The running hash after them.
    hash: Hash32,
    /// The first line timed out of its window: (index in the span, how).
    untimely: Option<(u64, Untimely)>,
}

/// Reads up to `want` lines, hashing them onto `hash` and checking their
/// times.
fn read_span(
    lines: &mut LogLines,
    hash: Hash32,
    want: u64,
    keep_crcs: bool,
    window: &Window,
) -> Result<SpanRead, Problem> {
    let mut chain = Chain::new(hash);
    let mut read = SpanRead {
        crcs: Vec::new(),
        bytes: 0,
        short: false,
        hash,
        untimely: None,
    };
    for k in 0..want {
        let Some(line) = lines.next_line()? else {
            read.short = true;
            break;
        };
        if !line.ends_with(b"\n") {
            read.short = true;
        }
        if read.untimely.is_none() {
            if let Err(how) = timely(&line, window) {
                read.untimely = Some((k, how));
            }
        }
        read.bytes += line.len() as u64;
        let crc = chain.line(&line);
        if keep_crcs {
            read.crcs.push(crc);
        }
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
    fps: Option<&[u32]>,
) -> Result<(u64, Problem), Problem> {
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
    let Some(fps) = fps else {
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

/// `problem` with the seal file's line number, where it has one.
fn with_at(problem: Problem, n: u64) -> Problem {
    match problem {
        Problem::Malformed { why, .. } => Problem::Malformed { at: n, why },
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::seal::key::Key;
    use crate::audit::seal::state::State;
    use crate::audit::seal::testing::{append_open, at, problem, Rig, BEAT};
    use std::io::Write;

    #[test]
    fn an_honest_run_verifies_and_the_keys_on_disk_cannot_forge_written_seals() {
        let mut rig = Rig::new();
        rig.write(3);
        assert_eq!(rig.seal()[0].seq, 1);
        assert!(rig.seal().is_empty(), "no new lines, no interval seal");
        rig.write(2);
        rig.seal();
        rig.shutdown();
        let report = rig.verify().unwrap();
        assert_eq!((report.files, report.lines, report.seals), (1, 5, 4));
        assert!(report.unsealed.is_empty() && report.late.is_empty());
        assert_eq!(report.end, End::Shutdown);
        assert!(report.to_string().contains(&format!(
            "validated from {} to {} (ended by a shutdown seal)",
            humantime::format_rfc3339_micros(at(0)),
            humantime::format_rfc3339_micros(at(5))
        )));
        // The state now holds the keys after seal 3: none of them makes or
        // checks a written seal.
        let state = State::load(&rig.state).unwrap();
        assert_eq!(state.next_seq, 4);
        for line in rig.seal_lines() {
            let r = Record::parse(&line).unwrap();
            let mut keys = state.ratchet.duplicate();
            assert!(!keys.check(r.epoch, r.sub, r.body().as_bytes(), &r.mac));
            for key in [keys.keys().0, keys.keys().1, keys.keys().2] {
                let mut forged = r.clone();
                forged.sign(&Key(Box::new(*key)));
                assert_ne!(forged.mac, r.mac);
            }
        }
        // They are the keys the verification key leads to at that position.
        let mut from_seed = Ratchet::from_seed(&rig.key.seed);
        from_seed.advance_to(state.ratchet.epoch());
        let last = Record::parse(rig.seal_lines().last().unwrap()).unwrap();
        assert!(from_seed.check(last.epoch, last.sub, last.body().as_bytes(), &last.mac));
        assert_eq!(from_seed.keys(), state.ratchet.keys());
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
        assert_eq!(problem(rig.verify()), (6, Problem::Changed { seq: 2 }));
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
        assert_eq!(problem(rig.verify()), (3, Problem::Removed { seq: 1 }));
        // The last line of a seal's span: the next one moves up into it.
        let mut lines = honest.clone();
        lines.remove(3);
        rig.set_log_lines(&lines);
        assert_eq!(problem(rig.verify()), (4, Problem::Changed { seq: 1 }));
        let mut lines = honest.clone();
        lines.insert(
            6,
            "2026-09-21T14:13:25.500000Z 127.0.0.1:1 T '4' is a prime number\n".into(),
        );
        rig.set_log_lines(&lines);
        assert_eq!(problem(rig.verify()), (7, Problem::Inserted { seq: 2 }));
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
                    seq: 1,
                    lines: 5,
                    ..
                }
            ),
            "{p:?}"
        );
        std::fs::write(&rig.log, &honest[..three + 10]).unwrap();
        let (line, p) = problem(rig.verify());
        assert_eq!(line, 4);
        assert!(matches!(p, Problem::Truncated { seq: 1, .. }), "{p:?}");
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
        assert_eq!(honest.len(), 6);
        let mut seals = honest.clone();
        seals.remove(2);
        rig.set_seal_lines(&seals);
        assert_eq!(
            problem(rig.verify()),
            (
                3,
                Problem::MissingSeal {
                    expected: 2,
                    found: 3
                }
            )
        );
        let mut seals = honest.clone();
        seals.swap(2, 3);
        rig.set_seal_lines(&seals);
        assert_eq!(
            problem(rig.verify()),
            (
                3,
                Problem::MissingSeal {
                    expected: 2,
                    found: 3
                }
            )
        );
        let mut seals = honest.clone();
        seals.insert(3, honest[2].clone());
        rig.set_seal_lines(&seals);
        assert_eq!(
            problem(rig.verify()),
            (
                5,
                Problem::Reordered {
                    expected: 3,
                    found: 2
                }
            )
        );
        // An edited field, the MAC left as it was.
        let mut seals = honest.clone();
        seals[3] = seals[3].replace(" lines=6 ", " lines=5 ");
        rig.set_seal_lines(&seals);
        assert_eq!(problem(rig.verify()), (5, Problem::BadMac { seq: 3 }));
        // The first seal alone is gone: the chain does not start.
        rig.set_seal_lines(&honest[1..]);
        assert_eq!(problem(rig.verify()), (1, Problem::NoStart { found: 1 }));
        // A whole chain made with another key.
        rig.set_seal_lines(&honest);
        let other = VerifyKey {
            seed: Key::generate().unwrap(),
            schedule: rig.key.schedule,
        };
        let p = verify(&other, std::slice::from_ref(&rig.log), &rig.options());
        assert_eq!(problem(p), (1, Problem::BadMac { seq: 0 }));
        assert!(rig.verify().is_ok());
    }

    /// CVE-2023-31439: a seal must be checked with the key of its own epoch
    /// and place. Seal 2 re-made (correctly otherwise) with the key of the
    /// next seal of its epoch, of the next epoch, or of the epoch before,
    /// is refused.
    #[test]
    fn a_seal_made_with_a_neighbouring_key_is_refused() {
        let mut rig = Rig::new();
        for _ in 0..3 {
            rig.write(1);
            rig.seal();
        }
        rig.shutdown();
        let honest = rig.seal_lines();
        let r = Record::parse(&honest[2]).unwrap();
        let key_at = |epoch: u64, sub: u64| {
            let mut k = Ratchet::from_seed(&rig.key.seed);
            k.advance_to(epoch);
            for _ in 0..sub {
                k.seal(b"");
            }
            Key(Box::new(*k.keys().0))
        };
        let right = key_at(r.epoch, r.sub);
        let mut again = r.clone();
        again.sign(&right);
        assert_eq!(again.mac, r.mac, "the reference derivation is right");
        for key in [
            key_at(r.epoch, r.sub + 1),
            key_at(r.epoch + 1, 0),
            key_at(r.epoch - 1, 0),
        ] {
            let mut forged = r.clone();
            forged.sign(&key);
            let mut seals = honest.clone();
            seals[2] = forged.to_line();
            rig.set_seal_lines(&seals);
            assert_eq!(problem(rig.verify()), (2, Problem::BadMac { seq: 2 }));
        }
    }

    #[test]
    fn without_fingerprints_a_mismatch_is_located_to_the_seals_range() {
        let mut rig = Rig::new();
        rig.write(3);
        rig.tracker.fps_overflow = true;
        rig.seal();
        rig.shutdown();
        assert!(rig.seal_lines()[1].contains(" fp=- "));
        let mut lines = rig.log_lines();
        lines[1] = lines[1].replace(" T ", " F ");
        rig.set_log_lines(&lines);
        assert_eq!(
            problem(rig.verify()),
            (
                1,
                Problem::Differs {
                    seq: 1,
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
        f.write_all(b"seal v2 seq=2 fileno=0 why=int").unwrap();
        let report = rig.verify().unwrap();
        assert_eq!(report.torn, vec![rig.log.clone()]);
        assert_eq!(report.end, End::Live);
        assert!(report
            .to_string()
            .contains("ends in a torn seal record (ignored)"));
    }

    /// A seal timed before the lines it covers was backdated; a line timed
    /// well before the seal preceding it was added late; a line with no
    /// time is not an audit line.
    #[test]
    fn lines_must_be_timed_inside_their_seals_window() {
        type Case = (&'static str, fn(&str) -> String, fn(&Problem) -> bool);
        let cases: [Case; 3] = [
            (
                "from the future",
                |l| l.replacen("2026-09-21T14:13", "2027-09-21T14:13", 1),
                |p| matches!(p, Problem::LineAfterSeal { seq: 2, .. }),
            ),
            (
                "from long ago",
                |l| l.replacen("2026-09-21T14:13", "2025-09-21T14:13", 1),
                |p| matches!(p, Problem::SealedLate { .. }),
            ),
            (
                "untimed",
                |l| format!("x{l}"),
                |p| matches!(p, Problem::NoTimestamp { seq: 2 }),
            ),
        ];
        for (what, edit, expected) in cases {
            let mut rig = Rig::new();
            rig.write(2);
            rig.seal();
            rig.n += 1;
            // The writer's line, edited before it is written and sealed.
            let line = format!(
                "{} 127.0.0.1:1 T '2' is a prime number\n",
                humantime::format_rfc3339_micros(at(rig.n))
            );
            let line = edit(&line);
            rig.file.write_all(line.as_bytes()).unwrap();
            rig.tracker.observe(line.as_bytes());
            rig.seal();
            rig.shutdown();
            let (at_line, p) = problem(rig.verify());
            assert_eq!(at_line, 3, "{what}");
            assert!(expected(&p), "{what}: {p:?}");
        }
    }

    #[test]
    fn a_gap_longer_than_two_heartbeats_is_refused_unless_a_clean_restart_explains_it() {
        let mut rig = Rig::new();
        rig.write(1);
        rig.seal();
        rig.n += 2 * BEAT.as_secs() + 1;
        rig.write(1);
        rig.seal();
        rig.shutdown();
        assert!(matches!(
            problem(rig.verify()),
            (2, Problem::Gap { from: 1, to: 2, .. })
        ));
        // The same time away, stopped cleanly: a shutdown and a start seal.
        let mut rig = Rig::new();
        rig.write(1);
        rig.shutdown();
        rig.n += 2 * BEAT.as_secs() + 1;
        rig.restart();
        rig.write(1);
        rig.shutdown();
        let report = rig.verify().unwrap();
        assert_eq!(report.restarts, 1);
    }

    #[test]
    fn the_end_must_be_a_shutdown_seal_or_recent() {
        let mut rig = Rig::new();
        rig.write(2);
        rig.seal();
        // Live: the last seal is recent.
        assert_eq!(rig.verify().unwrap().end, End::Live);
        // Later, with no seal since: the end is cut.
        let mut later = rig.options();
        later.until = at(rig.n + 2 * BEAT.as_secs() + 1);
        let cut = verify(&rig.key, std::slice::from_ref(&rig.log), &later);
        assert!(matches!(problem(cut), (0, Problem::EndCut { seq: 1, .. })));
        later.allow_unsealed_tail = true;
        let report = verify(&rig.key, std::slice::from_ref(&rig.log), &later).unwrap();
        assert_eq!(report.end, End::Accepted);
        // A seal after --until is from the future.
        let mut before = rig.options();
        before.until = at(0);
        rig.n += 3 * BEAT.as_secs();
        rig.write(1);
        rig.seal();
        let future = verify(&rig.key, std::slice::from_ref(&rig.log), &before);
        assert!(matches!(problem(future).1, Problem::Future { .. }));
    }

    /// The collector's copy (syslog lines with the seal somewhere in each):
    /// duplicates and other chains' seals pass; a local chain shorter than
    /// the copy, or a copy that forks, fails.
    #[test]
    fn the_collectors_copy_must_not_be_longer_than_the_chain_nor_fork() {
        let mut rig = Rig::new();
        rig.write(2);
        rig.seal();
        rig.write(1);
        rig.seal();
        rig.shutdown();
        let seals = rig.seal_lines();
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("received.log");
        let syslog = |s: &str| format!("2026-09-21T14:13:20+00:00 host prime-server[7] {s}\n");
        let mut received: Vec<String> = seals.iter().map(|s| syslog(s)).collect();
        received.insert(2, received[1].clone());
        received.push(syslog(&seals[2].replace(" lines=", " lines=1")));
        received.push("an unrelated line\n".into());
        std::fs::write(&copy, received.concat()).unwrap();
        let mut options = rig.options();
        options.seals_from = Some(copy.clone());
        let logs = std::slice::from_ref(&rig.log);
        let report = rig.verify_with(&options, logs).unwrap();
        assert_eq!(
            report.shipped,
            Some(ShippedSummary {
                seals: 4,
                matched: 4,
                ignored: 1
            })
        );
        // The local files cut back to seal 2: the copy is longer.
        let lines = rig.log_lines();
        rig.set_log_lines(&lines[..3]);
        rig.set_seal_lines(&seals[..3]);
        assert!(matches!(
            problem(rig.verify_with(&options, logs)),
            (0, Problem::ShippedLonger { shipped: 3, .. })
        ));
        // A copy that goes back to seal 2 with other contents, validly made
        // (the chain was rolled back and resumed).
        let mut forked = Record::parse(&seals[2]).unwrap();
        forked.hash = [7; 32];
        let mut keys = Ratchet::from_seed(&rig.key.seed);
        forked.mac = keys
            .seal_at(forked.epoch, forked.sub, forked.body().as_bytes())
            .unwrap();
        received.truncate(5);
        received.push(syslog(&forked.to_line()));
        std::fs::write(&copy, received.concat()).unwrap();
        assert!(matches!(
            problem(rig.verify_with(&options, logs)).1,
            Problem::ShippedFork { seq: 2, at: 6 }
        ));
    }
}
