//! A seal record: one line of `<audit-log>.seal`, its canonical text and
//! its MAC; and the fingerprint line that may precede it.

use super::fields::Fields;
use super::key::{sha256, Hash32, Key, ZERO};
use super::ratchet;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use thiserror::Error;

/// Most line fingerprints one seal carries; a seal covering more lines (a
/// huge log adopted at start-up) has no fingerprint line and locates only
/// to its range.
pub(super) const MAX_FP_LINES: usize = 65_536;

/// Longest `file` field: a longer path keeps its last characters after `...`,
/// so a record stays far below syslog's 8 KiB.
const MAX_FILE_FIELD: usize = 1024;

/// Longest line a seal file may hold: a fingerprint line at its largest.
pub(super) const MAX_SEAL_FILE_LINE: usize = 8 * MAX_FP_LINES + 64;

/// Why a seal was made; written as the `why` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The periodic seal (`--seal-interval`), when new lines were written
    /// (or the first seal of a file just opened).
    Interval,
    /// A heartbeat: nothing new was written for `--seal-heartbeat`; a
    /// compact record vouching that the file still ends where it did.
    Beat,
    /// SIGHUP reopened the same file.
    Reopen,
    /// The file's final seal: SIGHUP found a new file at the path.
    Rotate,
    /// The server is stopping.
    Shutdown,
    /// The server started: its first seal, covering any lines found on
    /// disk after the last seal (written by a run that crashed, or before
    /// sealing was turned on: sealed late).
    Start,
    /// At start-up, the file of the last seal was found rotated away: its
    /// final seal, covering any lines found after the last seal (late).
    Retire,
}

impl Why {
    /// The word in the record.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Why::Interval => "interval",
            Why::Beat => "beat",
            Why::Reopen => "reopen",
            Why::Rotate => "rotate",
            Why::Shutdown => "shutdown",
            Why::Start => "start",
            Why::Retire => "retire",
        }
    }

    pub(super) fn parse(word: &str) -> Option<Why> {
        Some(match word {
            "interval" => Why::Interval,
            "beat" => Why::Beat,
            "reopen" => Why::Reopen,
            "rotate" => Why::Rotate,
            "shutdown" => Why::Shutdown,
            "start" => Why::Start,
            "retire" => Why::Retire,
            _ => return None,
        })
    }

    /// A file's last seal: the chain goes on in the next file.
    pub(super) fn is_final(self) -> bool {
        matches!(self, Why::Rotate | Why::Retire)
    }

    /// Made when the server started.
    pub(super) fn is_start_up(self) -> bool {
        matches!(self, Why::Start | Why::Retire)
    }
}

/// One seal record, as written on one line of the sidecar.
///
/// A heartbeat (`why=beat`) is written compactly, without `beat`, `file`,
/// `skip`, `lines`, `hash` and `fp`: it vouches that the file still ends at
/// `len`, with the lines and hash of the seal before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Seal number in the chain, from 0.
    pub seq: u64,
    /// Which file of the chain this seal covers (0 for the first file).
    pub fileno: u64,
    /// Why it was made.
    pub why: Why,
    /// When, as written (RFC 3339 UTC, microseconds); inside `epoch`.
    pub time: String,
    /// The key epoch `e` it was made in.
    pub epoch: u64,
    /// Seals made in that epoch before it: its MAC key is `m_{epoch,sub}`.
    pub sub: u64,
    /// The run's `--seal-heartbeat`, in milliseconds (0 in a heartbeat).
    pub beat_ms: u64,
    /// The log's path when it was written, `%XX`-escaped.
    pub file: String,
    /// Bytes at the start of the file that were there when it was opened.
    pub skip: u64,
    /// Bytes of the file covered, from its start.
    pub len: u64,
    /// Lines of the file covered, from its start.
    pub lines: u64,
    /// Running hash after the last covered line.
    pub hash: Hash32,
    /// SHA-256 of the previous seal's line.
    pub prev: Hash32,
    /// SHA-256 of the fingerprint line's digits, if there is one.
    pub fp: Option<Hash32>,
    /// HMAC-SHA-256 with `m_{epoch,sub}` over the line up to ` mac=`.
    pub mac: Hash32,
}

/// Why a seal line could not be read as a record.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct MalformedRecord(pub(super) String);

impl Record {
    /// The text the MAC covers: the whole line up to ` mac=`.
    pub(super) fn body(&self) -> String {
        if self.why == Why::Beat {
            return format!(
                "seal v2 seq={} fileno={} why=beat time={} epoch={} sub={} len={} prev={}",
                self.seq,
                self.fileno,
                self.time,
                self.epoch,
                self.sub,
                self.len,
                hex::encode(self.prev)
            );
        }
        format!(
            "seal v2 seq={} fileno={} why={} time={} epoch={} sub={} beat={} file={} skip={} len={} lines={} hash={} prev={} fp={}",
            self.seq,
            self.fileno,
            self.why.as_str(),
            self.time,
            self.epoch,
            self.sub,
            self.beat_ms,
            self.file,
            self.skip,
            self.len,
            self.lines,
            hex::encode(self.hash),
            hex::encode(self.prev),
            self.fp.map_or_else(|| "-".to_owned(), hex::encode)
        )
    }

    /// Sets `mac` to `key`'s MAC of the body (the line up to ` mac=`). The
    /// sealer signs with its ratchet; public so tests can play an attacker
    /// with a stolen key.
    pub fn sign(&mut self, key: &Key) {
        self.mac = ratchet::hmac(key, self.body().as_bytes());
    }

    /// The full line, without its newline.
    pub fn to_line(&self) -> String {
        format!("{} mac={}", self.body(), hex::encode(self.mac))
    }

    /// The `time` field in microseconds since the Unix epoch (it parsed
    /// as RFC 3339 when the record was read).
    pub(super) fn time_us(&self) -> u64 {
        humantime::parse_rfc3339(&self.time).map_or(0, super::key::micros)
    }

    /// Reads a line written by [`Record::to_line`]. Only the exact canonical
    /// text is accepted, so one record has one spelling and the MAC covers
    /// exactly what was parsed.
    ///
    /// # Errors
    ///
    /// [`MalformedRecord`] saying what is wrong.
    pub fn parse(line: &str) -> Result<Record, MalformedRecord> {
        let record = Record::fields(&mut Fields::words(line)).map_err(MalformedRecord)?;
        if record.to_line() != line {
            return Err(MalformedRecord("not in canonical form".into()));
        }
        Ok(record)
    }

    /// Reads the fields in their fixed order; the caller checks the spelling.
    fn fields<'a>(f: &mut Fields<'a, std::str::Split<'a, char>>) -> Result<Record, String> {
        if f.raw() != Some("seal") || f.raw() != Some("v2") {
            return Err("does not start with `seal v2`".into());
        }
        let seq = f.number("seq")?;
        let fileno = f.number("fileno")?;
        let why = Why::parse(f.text("why")?).ok_or("unknown `why`")?;
        let time = f.text("time")?.to_owned();
        if humantime::parse_rfc3339(&time).is_err() {
            return Err("`time` is not an RFC 3339 time".into());
        }
        let epoch = f.number("epoch")?;
        let sub = f.number("sub")?;
        let mut record = Record {
            seq,
            fileno,
            why,
            time,
            epoch,
            sub,
            beat_ms: 0,
            file: String::new(),
            skip: 0,
            len: 0,
            lines: 0,
            hash: ZERO,
            prev: ZERO,
            fp: None,
            mac: ZERO,
        };
        if why == Why::Beat {
            record.len = f.number("len")?;
        } else {
            record.beat_ms = f.number("beat")?;
            record.file = f.text("file")?.to_owned();
            record.skip = f.number("skip")?;
            record.len = f.number("len")?;
            record.lines = f.number("lines")?;
            record.hash = f.hash("hash")?;
        }
        record.prev = f.hash("prev")?;
        if why != Why::Beat {
            record.fp = match f.text("fp")? {
                "-" => None,
                text => Some(super::fields::hash(text, "fp")?),
            };
        }
        record.mac = f.hash("mac")?;
        if !f.done() {
            return Err("text after the `mac` field".into());
        }
        Ok(record)
    }
}

/// The fingerprint line written just before a seal: `fp v2 seq=N <8 hex
/// digits per line>`. Its digits are authenticated by the seal's `fp`
/// field (their SHA-256); it only *locates* a tampered line, integrity
/// rests on the running hash.
pub(super) struct FpLine;

impl FpLine {
    /// The line for seal `seq` (without newline) and the hash of its digits.
    pub(super) fn render(seq: u64, fps: &[u32]) -> (String, Hash32) {
        let digits: String = fps.iter().map(|fp| format!("{fp:08x}")).collect();
        let hash = sha256(digits.as_bytes());
        (format!("fp v2 seq={seq} {digits}"), hash)
    }

    /// The seal number and digits of a fingerprint line, if it is one.
    pub(super) fn parse(line: &str) -> Option<(u64, &str)> {
        let rest = line.strip_prefix("fp v2 seq=")?;
        let (seq, digits) = rest.split_once(' ')?;
        let seq = super::fields::number(seq, "seq").ok()?;
        Some((seq, digits))
    }

    /// The fingerprints in `digits`, if they are whole 8-digit hex numbers.
    pub(super) fn decode(digits: &str) -> Option<Vec<u32>> {
        if !digits.len().is_multiple_of(8) || digits.len() / 8 > MAX_FP_LINES {
            return None;
        }
        digits
            .as_bytes()
            .chunks(8)
            .map(|c| {
                let text = std::str::from_utf8(c).ok()?;
                (text
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
                .then(|| u32::from_str_radix(text, 16).ok())
                .flatten()
            })
            .collect()
    }
}

/// `%XX`-escapes a path for the `file` field: no spaces, nothing a terminal
/// would interpret.
pub(super) fn encode_path(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"._/+-~,:@".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() > MAX_FILE_FIELD {
        // All ASCII: any byte index is a character boundary.
        out = format!("...{}", &out[out.len() - (MAX_FILE_FIELD - 3)..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::seal::testing::sample_record;

    #[test]
    fn records_round_trip_in_one_canonical_spelling() {
        let r = sample_record();
        let line = r.to_line();
        assert!(line.starts_with(
            "seal v2 seq=7 fileno=2 why=rotate time=2026-11-23T19:14:18.000123Z epoch=40 sub=1 \
             beat=60000 file=/var/log/prime%20server/a.log skip=0 len=140 lines=2 hash=abab"
        ));
        assert!(line.contains(" fp=0303"));
        assert!(line.contains(" mac=5a5a"));
        assert_eq!(Record::parse(&line).unwrap(), r);
        let no_fp = Record {
            fp: None,
            ..r.clone()
        };
        assert!(no_fp.to_line().contains(" fp=- "));
        assert_eq!(Record::parse(&no_fp.to_line()).unwrap(), no_fp);
        for bad in [
            line.replace("seq=7", "seq=07"),
            line.replace("seal v2", "seal v1"),
            line.replace("hash=abab", "hash=ABAB"),
            line.replace(" len=", "  len="),
            line.replace("why=rotate", "why=whim"),
            line.replace("seq=7 fileno=2", "fileno=2 seq=7"),
            line.replace(" fp=0303", " fp=03"),
            line.replace("time=2026-11-23T19:14:18.000123Z", "time=yesterday"),
            format!("{line} extra=1"),
            line[..line.len() - 2].to_owned(),
        ] {
            assert!(Record::parse(&bad).is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn a_heartbeat_is_compact_and_canonical() {
        let beat = Record {
            why: Why::Beat,
            beat_ms: 0,
            file: String::new(),
            skip: 0,
            lines: 0,
            hash: ZERO,
            fp: None,
            ..sample_record()
        };
        let line = beat.to_line();
        assert!(line.starts_with(
            "seal v2 seq=7 fileno=2 why=beat time=2026-11-23T19:14:18.000123Z epoch=40 sub=1 len=140 prev=0101"
        ));
        assert!(line.len() < 260, "{} bytes", line.len());
        assert_eq!(Record::parse(&line).unwrap(), beat);
        // A heartbeat carrying the fields it must not have is refused.
        let full = Record {
            why: Why::Interval,
            ..beat.clone()
        };
        assert!(Record::parse(&full.to_line().replace("why=interval", "why=beat")).is_err());
    }

    #[test]
    fn fingerprint_lines_round_trip_and_refuse_junk() {
        let (line, hash) = FpLine::render(9, &[0xdead_beef, 7]);
        assert_eq!(line, "fp v2 seq=9 deadbeef00000007");
        let (seq, digits) = FpLine::parse(&line).unwrap();
        assert_eq!((seq, sha256(digits.as_bytes())), (9, hash));
        assert_eq!(FpLine::decode(digits), Some(vec![0xdead_beef, 7]));
        assert_eq!(FpLine::decode("deadbee"), None);
        assert_eq!(FpLine::decode("DEADBEEF"), None);
        assert!(FpLine::parse("seal v2 seq=9").is_none());
    }

    #[test]
    fn paths_are_escaped_for_the_file_field() {
        assert_eq!(encode_path(Path::new("logs/p_s.log")), "logs/p_s.log");
        assert_eq!(encode_path(Path::new("a b\n%")), "a%20b%0A%25");
        let long = encode_path(Path::new(&"d/".repeat(2000)));
        assert_eq!(long.len(), MAX_FILE_FIELD);
        assert!(long.starts_with("...") && long.ends_with("d/"));
    }
}
