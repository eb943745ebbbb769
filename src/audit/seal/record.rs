//! A seal record: one line of `<audit-log>.seal`, its canonical text and
//! its MAC.

use super::fields::Fields;
use super::key::{Hash32, Key};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use thiserror::Error;

/// Most line fingerprints one seal carries; a seal covering more lines (a
/// huge log adopted at start-up) writes `fp=-` and locates only to its range.
pub(super) const MAX_FP_LINES: usize = 65_536;

/// Why a seal was made; written as the `why` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The periodic seal (`--seal-interval`), only when new lines were written.
    Interval,
    /// SIGHUP reopened the same file.
    Reopen,
    /// The file's final seal: SIGHUP found a new file at the path.
    Rotate,
    /// The server is stopping.
    Shutdown,
    /// Lines found on disk after the last seal when sealing (re)started:
    /// written by a run that crashed, or before sealing was turned on.
    Start,
}

impl Why {
    /// The word in the record.
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Why::Interval => "interval",
            Why::Reopen => "reopen",
            Why::Rotate => "rotate",
            Why::Shutdown => "shutdown",
            Why::Start => "start",
        }
    }

    pub(super) fn parse(word: &str) -> Option<Why> {
        Some(match word {
            "interval" => Why::Interval,
            "reopen" => Why::Reopen,
            "rotate" => Why::Rotate,
            "shutdown" => Why::Shutdown,
            "start" => Why::Start,
            _ => return None,
        })
    }
}

/// One seal record, as written on one line of the sidecar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Seal number `i`; sealed with `k_i`.
    pub seq: u64,
    /// Which file of the chain this seal covers (0 for the first file).
    pub fileno: u64,
    /// Why it was made.
    pub why: Why,
    /// When, as written (RFC 3339 UTC, microseconds).
    pub time: String,
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
    /// CRC-32 of each line since the previous seal, if not too many.
    pub fps: Option<Vec<u32>>,
    /// HMAC-SHA-256 with `k_seq` over the record's body (the line up to ` mac=`).
    pub mac: Hash32,
}

/// Why a seal line could not be read as a record.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct MalformedRecord(pub(super) String);

impl Record {
    /// The text the MAC covers: the whole line up to ` mac=`.
    pub(super) fn body(&self) -> String {
        let fps = match &self.fps {
            None => "-".to_owned(),
            Some(fps) if fps.is_empty() => "-".to_owned(),
            Some(fps) => fps.iter().map(|fp| format!("{fp:08x}")).collect(),
        };
        format!(
            "seal v1 seq={} fileno={} why={} time={} file={} skip={} len={} lines={} hash={} prev={} fp={}",
            self.seq,
            self.fileno,
            self.why.as_str(),
            self.time,
            self.file,
            self.skip,
            self.len,
            self.lines,
            hex::encode(self.hash),
            hex::encode(self.prev),
            fps
        )
    }

    /// Sets `mac` to `key`'s MAC of the body (the line up to ` mac=`). The sealer signs seal
    /// `i` with `k_i`; public so tests can play an attacker with a stolen key.
    pub fn sign(&mut self, key: &Key) {
        self.mac = key.mac(self.body().as_bytes());
    }

    /// Whether `mac` is `key`'s MAC of [`Record::body`] (constant-time).
    pub(super) fn verifies(&self, key: &Key) -> bool {
        key.verifies(self.body().as_bytes(), &self.mac)
    }

    /// The full line, without its newline.
    pub fn to_line(&self) -> String {
        format!("{} mac={}", self.body(), hex::encode(self.mac))
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
        if f.raw() != Some("seal") || f.raw() != Some("v1") {
            return Err("does not start with `seal v1`".into());
        }
        let seq = f.number("seq")?;
        let fileno = f.number("fileno")?;
        let why = Why::parse(f.text("why")?).ok_or("unknown `why`")?;
        let time = f.text("time")?.to_owned();
        if humantime::parse_rfc3339(&time).is_err() {
            return Err("`time` is not an RFC 3339 time".into());
        }
        let file = f.text("file")?.to_owned();
        let skip = f.number("skip")?;
        let len = f.number("len")?;
        let lines = f.number("lines")?;
        let hash = f.hash("hash")?;
        let prev = f.hash("prev")?;
        let fps = parse_fps(f.text("fp")?)?;
        let mac = f.hash("mac")?;
        if !f.done() {
            return Err("text after the `mac` field".into());
        }
        Ok(Record {
            seq,
            fileno,
            why,
            time,
            file,
            skip,
            len,
            lines,
            hash,
            prev,
            fps,
            mac,
        })
    }
}

/// The `fp` field: `-`, or 8 hex digits per line.
fn parse_fps(text: &str) -> Result<Option<Vec<u32>>, String> {
    if text == "-" {
        return Ok(None);
    }
    if !text.len().is_multiple_of(8) {
        return Err("`fp` is not whole 8-digit fingerprints".into());
    }
    let mut fps = Vec::with_capacity(text.len() / 8);
    for chunk in text.as_bytes().chunks(8) {
        let hex = std::str::from_utf8(chunk).map_err(|_| "`fp` is not hex")?;
        fps.push(u32::from_str_radix(hex, 16).map_err(|_| "`fp` is not hex")?);
    }
    Ok(Some(fps))
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
            "seal v1 seq=7 fileno=2 why=rotate time=2026-11-23T19:14:18.000123Z \
             file=/var/log/prime%20server/a.log skip=0 len=140 lines=2 hash=abab"
        ));
        assert!(line.contains(" fp=deadbeef00000007 mac=5a5a"));
        assert_eq!(Record::parse(&line).unwrap(), r);
        let no_fp = Record {
            fps: None,
            ..r.clone()
        };
        assert_eq!(Record::parse(&no_fp.to_line()).unwrap(), no_fp);
        for bad in [
            line.replace("seq=7", "seq=07"),
            line.replace("hash=abab", "hash=ABAB"),
            line.replace(" len=", "  len="),
            line.replace("why=rotate", "why=whim"),
            line.replace("seq=7 fileno=2", "fileno=2 seq=7"),
            line.replace("fp=deadbeef00000007", "fp=deadbeef0"),
            line.replace("time=2026-11-23T19:14:18.000123Z", "time=yesterday"),
            format!("{line} extra=1"),
            line[..line.len() - 2].to_owned(),
        ] {
            assert!(Record::parse(&bad).is_err(), "accepted: {bad}");
        }
    }

    #[test]
    fn paths_are_escaped_for_the_file_field() {
        assert_eq!(encode_path(Path::new("logs/p_s.log")), "logs/p_s.log");
        assert_eq!(encode_path(Path::new("a b\n%")), "a%20b%0A%25");
    }
}
