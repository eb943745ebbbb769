//! Forward-secure seals over the audit log, and their verification.
//!
//! What this module does today: it keeps a running hash over every byte of
//! the audit log, and turns it into *seal records* appended to a sidecar file
//! `<audit-log>.seal`, each authenticated with a key that evolves by a one-way
//! step after every seal (Bellare–Yee / Schneier–Kelsey forward security).
//! [`verify`] checks a run of log files against their seals with the initial
//! key, and `prime-audit` (`src/bin/prime-audit.rs`) is its command line.
//!
//! # The pieces
//!
//! - [`Key`]: a sealing key `k_i`. `k_{i+1} = SHA-256("prime-audit key step
//!   v1\0" || k_i)`; the old key is zeroized in memory and its state file is
//!   replaced and overwritten on disk. `k_0`, printed by `prime-audit keygen`,
//!   is the verification key: from it the verifier derives every `k_i` itself.
//! - The running hash is a chain over lines: `h_0` is 32 zero bytes and
//!   `h_n = SHA-256(h_{n-1} || line_n)`, `line_n` with its `\n`. It covers every
//!   byte (line boundaries come from the bytes themselves), it is 32 bytes of
//!   state, so it can be stored and resumed, and it carries on from one file
//!   to the next. Each line also gets a CRC-32 *fingerprint*; fingerprints
//!   only *locate* a tampered line (they are authenticated by the seal's MAC,
//!   but integrity rests on the SHA-256 chain, not on them).
//! - [`Tracker`] lives inside the audit writer's mutex: [`Tracker::observe`]
//!   hashes the bytes just appended (no I/O; it only pushes a 4-byte
//!   fingerprint per line onto a vector), and [`Tracker::cut`] / [`Tracker::shutdown`] /
//!   [`Tracker::reopened`] take cheap snapshots ([`Cut`]s).
//! - [`Sealer`] lives in one sealing thread: [`Sealer::seal`] turns cuts into
//!   seal records, persists the evolved key and appends the records, all
//!   outside the writer's mutex. [`Sealer::open`] resumes from the state file.
//!
//! # A seal record
//!
//! One text line in `<audit-log>.seal`, fields in this fixed order:
//!
//! ```text
//! seal v1 seq=3 fileno=0 why=interval time=2026-11-23T19:14:18.000123Z file=logs/prime_server.log skip=0 len=284 lines=4 hash=<64 hex> prev=<64 hex> fp=<8 hex per line> mac=<64 hex>
//! ```
//!
//! | field | meaning | what it defeats |
//! | --- | --- | --- |
//! | `seq` | seal number `i`; the MAC key is `k_i` | reordering, removal (gaps), a seal checked with another epoch's key (CVE-2023-31439) |
//! | `fileno` | which file of the chain (0, 1, ... at each rotation) | replaying a seal into another file, files given out of order |
//! | `why` | `interval`, `reopen`, `rotate` (the file's final seal), `shutdown`, `start` (lines found on disk at start-up) | appending to a closed file, hiding late-sealed lines |
//! | `time` | RFC 3339 time of sealing | (information) |
//! | `file` | the log's path when it was written (`%XX` for unusual bytes) | (information: files are renamed by rotation) |
//! | `skip` | bytes already in the file when the server opened it, not sealed | (reported by the verifier) |
//! | `len`, `lines` | bytes and lines of this file covered, from its start | truncation, deletion, insertion |
//! | `hash` | the running hash after the last covered line | any changed byte |
//! | `prev` | SHA-256 of the previous seal line (zeros for seal 0) | splicing seals from elsewhere, removal |
//! | `fp` | fingerprints of the lines since the previous seal, or `-` beyond [`MAX_FP_LINES`] | (locating the first bad line) |
//! | `mac` | HMAC-SHA-256 with `k_i` over the line up to ` mac=` | forgery by anyone without `k_i` |
//!
//! A seal replayed from another log's chain fails its MAC (another `k_0`);
//! one moved within this chain, or into another file of it, breaks `seq`,
//! `prev`, `fileno` or the running hash at its new place.
//!
//! An attacker who copies the state file when it holds `k_j` can forge seals
//! numbered `j` and later, never earlier ones: the verifier checks seal `i`
//! only with the `k_i` it derived from `k_0`, requires the chain to start at
//! seal 0 with consecutive numbers, and recomputes the running hash, so a
//! rewritten line sealed before `j` fails at its own seal.
//!
//! # Crash safety
//!
//! Each seal is: build the record and MAC it with `k_i`; compute `k_{i+1}`;
//! save the state (`k_{i+1}`, position, and the record itself) by writing a
//! temporary file (0600), fsync, rename over the old one, fsync the directory,
//! then overwrite the old state's bytes; only then append the record to the
//! sidecar and fsync it. So the key on disk never can forge a seal already
//! written, and a crash between saving the state and appending loses nothing:
//! [`Sealer::open`] finds the record in the state and appends it (cutting a
//! torn partial record first).
//!
//! # Start-up, rotation, shutdown
//!
//! - [`Sealer::open`] resumes the chain. Bytes after the last seal (written by
//!   a run that crashed) are read, hashed and sealed at once with
//!   `why=start`; `prime-audit verify` lists such lines as *sealed late*, and,
//!   if nothing ever seals them, as the *unsealed tail*. If the log at the path
//!   is a different file than the last sealed one (rotated while stopped),
//!   the chain carries on to it as the next file. A log shorter than its seals
//!   is an error: it was truncated while the server was stopped.
//! - [`Tracker::reopened`] (SIGHUP): the same file again gives a `reopen` seal;
//!   a new file ends the old one with a `rotate` seal and starts the next
//!   `fileno`. If the operator did not rotate the sidecar with the log, the
//!   sealer renames it beside the rotated log (`<rotated name>.seal`, found by
//!   inode). `copytruncate` rotation cannot be sealed (the bytes vanish).
//! - [`Tracker::shutdown`]: a final `shutdown` seal.
//!
//! # How the audit writer drives it
//!
//! ```text
//! let (mut sealer, tracker, _resumed) = Sealer::open(&state, &log, SystemTime::now())?; // after the log is opened
//! // under the writer's mutex, after each successful append of whole lines:
//! tracker.observe(bytes);
//! // sealing thread, every --seal-interval (cut under the mutex, seal outside):
//! let cuts = writer.lock().tracker.cut();
//! sealer.seal(cuts, SystemTime::now())?;
//! // SIGHUP, under the mutex after opening the new file:
//! tracker.reopened(FileId::of(&new_file)?, new_file.metadata()?.len());
//! // (then wake the sealing thread: its next cut() carries the boundary)
//! // shutdown: let cuts = writer.lock().tracker.shutdown(); sealer.seal(cuts, now)?;
//! ```

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use thiserror::Error;
use zeroize::Zeroizing;

/// Bytes in a key, a hash and a MAC (SHA-256 sized).
pub const KEY_LEN: usize = 32;

/// Most line fingerprints one seal carries; a seal covering more lines (a
/// huge log adopted at start-up) writes `fp=-` and locates only to its range.
pub const MAX_FP_LINES: usize = 65_536;

/// Domain separation for the key step, so `k_{i+1}` is never a hash that
/// means anything else.
const KEY_STEP_TAG: &[u8] = b"prime-audit key step v1\0";

/// First line of a state file.
const STATE_MAGIC: &str = "prime-audit state v1";

/// A 32-byte SHA-256 value: the running hash or a seal line's hash.
pub type Hash32 = [u8; KEY_LEN];

/// The all-zero hash: `h_0`, and `prev` of seal 0.
const ZERO: Hash32 = [0; KEY_LEN];

type HmacSha256 = Hmac<Sha256>;

/// A sealing key `k_i`; zeroized when dropped, never printed by `Debug`.
pub struct Key(Zeroizing<[u8; KEY_LEN]>);

/// Why a key given as text was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not exactly 64 hexadecimal digits.
    #[error("a key is 64 hexadecimal digits")]
    BadHex,
}

impl Key {
    /// A fresh random `k_0` from the operating system.
    ///
    /// # Errors
    ///
    /// The OS random source failed.
    pub fn generate() -> Result<Key, getrandom::Error> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(bytes.as_mut())?;
        Ok(Key(bytes))
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    ///
    /// # Errors
    ///
    /// [`KeyError::BadHex`] for anything else.
    pub fn from_hex(text: &str) -> Result<Key, KeyError> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        hex::decode_to_slice(text.trim(), bytes.as_mut()).map_err(|_| KeyError::BadHex)?;
        Ok(Key(bytes))
    }

    /// The key as 64 lowercase hex digits, erased when dropped.
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(self.0.as_ref()))
    }

    /// The next key, `k_{i+1} = SHA-256(tag || k_i)`: one-way, so holding it
    /// says nothing about `k_i`.
    pub fn step(&self) -> Key {
        let mut hasher = Sha256::new();
        hasher.update(KEY_STEP_TAG);
        hasher.update(self.0.as_ref());
        let mut next = Zeroizing::new([0u8; KEY_LEN]);
        next.copy_from_slice(&hasher.finalize());
        Key(next)
    }

    /// Replaces this key by the next one, erasing it.
    pub fn advance(&mut self) {
        *self = self.step();
    }

    /// HMAC-SHA-256 of `message` with this key.
    fn mac(&self, message: &[u8]) -> Hash32 {
        let mut mac = self.hmac();
        mac.update(message);
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// Whether `tag` is this key's MAC of `message`, compared in constant time.
    fn verifies(&self, message: &[u8], tag: &[u8]) -> bool {
        let mut mac = self.hmac();
        mac.update(message);
        mac.verify_slice(tag).is_ok()
    }

    fn hmac(&self) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(self.0.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC accepts a 32-byte key"))
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// SHA-256 of `bytes`, as an array.
fn sha256(bytes: &[u8]) -> Hash32 {
    Sha256::digest(bytes).into()
}

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

    fn from_meta(meta: &std::fs::Metadata) -> FileId {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The identity of the file at `path`, or `None` if there is none.
    fn at(path: &Path) -> io::Result<Option<FileId>> {
        match std::fs::symlink_metadata(path) {
            Ok(meta) => Ok(Some(FileId::from_meta(&meta))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

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
    pub fn as_str(self) -> &'static str {
        match self {
            Why::Interval => "interval",
            Why::Reopen => "reopen",
            Why::Rotate => "rotate",
            Why::Shutdown => "shutdown",
            Why::Start => "start",
        }
    }

    fn parse(word: &str) -> Option<Why> {
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
    /// HMAC-SHA-256 with `k_seq` over [`Record::body`].
    pub mac: Hash32,
}

/// Why a seal line could not be read as a record.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("{0}")]
pub struct MalformedRecord(String);

impl Record {
    /// The text the MAC covers: the whole line up to ` mac=`.
    pub fn body(&self) -> String {
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

    /// Sets `mac` to `key`'s MAC of [`Record::body`]. The sealer signs seal
    /// `i` with `k_i`; public so tests can play an attacker with a stolen key.
    pub fn sign(&mut self, key: &Key) {
        self.mac = key.mac(self.body().as_bytes());
    }

    /// Whether `mac` is `key`'s MAC of [`Record::body`] (constant-time).
    pub fn verifies(&self, key: &Key) -> bool {
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
        let bad = |why: &str| MalformedRecord(why.to_owned());
        let mut words = line.split(' ');
        if words.next() != Some("seal") || words.next() != Some("v1") {
            return Err(bad("does not start with `seal v1`"));
        }
        let mut field = |name: &str| -> Result<&str, MalformedRecord> {
            let word = words
                .next()
                .ok_or_else(|| MalformedRecord(format!("no `{name}` field")))?;
            word.strip_prefix(name)
                .and_then(|w| w.strip_prefix('='))
                .ok_or_else(|| MalformedRecord(format!("expected `{name}=`, found `{word}`")))
        };
        let number = |text: &str, name: &str| {
            text.parse::<u64>()
                .map_err(|_| MalformedRecord(format!("`{name}` is not a number")))
        };
        let hash = |text: &str, name: &str| {
            let mut out = [0u8; KEY_LEN];
            hex::decode_to_slice(text, &mut out)
                .map_err(|_| MalformedRecord(format!("`{name}` is not 64 hex digits")))?;
            Ok::<_, MalformedRecord>(out)
        };
        let seq = number(field("seq")?, "seq")?;
        let fileno = number(field("fileno")?, "fileno")?;
        let why = Why::parse(field("why")?).ok_or_else(|| bad("unknown `why`"))?;
        let time = field("time")?.to_owned();
        if humantime::parse_rfc3339(&time).is_err() {
            return Err(bad("`time` is not an RFC 3339 time"));
        }
        let file = field("file")?.to_owned();
        let skip = number(field("skip")?, "skip")?;
        let len = number(field("len")?, "len")?;
        let lines = number(field("lines")?, "lines")?;
        let hash_v = hash(field("hash")?, "hash")?;
        let prev = hash(field("prev")?, "prev")?;
        let fp_text = field("fp")?;
        let fps = if fp_text == "-" {
            None
        } else {
            if fp_text.len() % 8 != 0 {
                return Err(bad("`fp` is not whole 8-digit fingerprints"));
            }
            let mut fps = Vec::with_capacity(fp_text.len() / 8);
            for chunk in fp_text.as_bytes().chunks(8) {
                let text = std::str::from_utf8(chunk).map_err(|_| bad("`fp` is not hex"))?;
                fps.push(u32::from_str_radix(text, 16).map_err(|_| bad("`fp` is not hex"))?);
            }
            Some(fps)
        };
        let mac = hash(field("mac")?, "mac")?;
        if words.next().is_some() {
            return Err(bad("text after the `mac` field"));
        }
        let record = Record {
            seq,
            fileno,
            why,
            time,
            file,
            skip,
            len,
            lines,
            hash: hash_v,
            prev,
            fps,
            mac,
        };
        if record.to_line() != line {
            return Err(bad("not in canonical form"));
        }
        Ok(record)
    }
}

/// One step of the running hash: `SHA-256(hash || line)`, `line` with its
/// `\n`. Public so tools and tests can recompute a chain.
pub fn next_hash(hash: &Hash32, line: &[u8]) -> Hash32 {
    let mut h = Sha256::new();
    h.update(hash);
    h.update(line);
    h.finalize().into()
}

/// A line's fingerprint in the `fp` field: its CRC-32.
pub fn fingerprint(line: &[u8]) -> u32 {
    crc32fast::hash(line)
}

/// `%XX`-escapes a path for the `file` field: no spaces, nothing a terminal
/// would interpret.
fn encode_path(path: &Path) -> String {
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

/// The running hash chain and the current line's fingerprint.
#[derive(Clone)]
struct Chain {
    /// The hash after the last complete line.
    hash: Hash32,
    /// SHA-256 seeded with `hash`, fed the current line so far.
    line: Sha256,
    /// CRC-32 of the current line so far.
    crc: crc32fast::Hasher,
}

impl Chain {
    fn new(hash: Hash32) -> Chain {
        let mut line = Sha256::new();
        line.update(hash);
        Chain {
            hash,
            line,
            crc: crc32fast::Hasher::new(),
        }
    }

    /// Feeds part of the current line (no `\n` inside except at the end).
    fn update(&mut self, bytes: &[u8]) {
        self.line.update(bytes);
        self.crc.update(bytes);
    }

    /// Ends the current line; returns its fingerprint.
    fn end_line(&mut self) -> u32 {
        self.hash = self.line.finalize_reset().into();
        self.line.update(self.hash);
        std::mem::take(&mut self.crc).finalize()
    }

    /// Hashes one whole line and returns its fingerprint.
    fn line(&mut self, line: &[u8]) -> u32 {
        self.update(line);
        self.end_line()
    }
}

/// One file of the chain, as the writer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Position in the chain: 0 for the first file, +1 at each rotation.
    pub fileno: u64,
    /// The log path it was opened at.
    pub path: PathBuf,
    /// Its identity, to recognise it after a rename.
    pub id: FileId,
    /// Bytes it already held when opened, which no seal covers.
    pub skip: u64,
}

/// A snapshot taken under the writer's mutex, to be sealed outside it.
#[derive(Debug, Clone)]
pub struct Cut {
    /// Cut number, so the sealer can insist on order.
    n: u64,
    /// The file it covers.
    seg: Arc<Segment>,
    /// Why it is being sealed.
    why: Why,
    /// Bytes of the file covered (complete lines only).
    len: u64,
    /// Lines of the file covered.
    lines: u64,
    /// Running hash after them.
    hash: Hash32,
    /// Fingerprints of the lines since the previous cut (None if too many).
    fps: Option<Vec<u32>>,
}

impl Cut {
    /// Why this cut was taken.
    pub fn why(&self) -> Why {
        self.why
    }

    /// Lines of its file it covers, from the file's start.
    pub fn lines(&self) -> u64 {
        self.lines
    }
}

/// The writer-side half: hashes appended bytes and takes cuts. Cheap, no
/// I/O; meant to live inside the audit writer's mutex.
pub struct Tracker {
    /// The file being written.
    seg: Arc<Segment>,
    /// Bytes of complete lines, from the file's start (including `skip`).
    len: u64,
    /// Complete lines in the file (after `skip`).
    lines: u64,
    /// Bytes of the current, unfinished line.
    partial: u64,
    /// The hash chain.
    chain: Chain,
    /// Lines in the file at the last cut.
    cut_lines: u64,
    /// Fingerprints of lines since the last cut, up to [`MAX_FP_LINES`].
    fps: Vec<u32>,
    /// More lines than [`MAX_FP_LINES`] since the last cut.
    fps_overflow: bool,
    /// Number of the next cut.
    next_cut: u64,
    /// Cuts taken by [`Tracker::reopened`], waiting for the next `cut`.
    boundary: Vec<Cut>,
}

impl fmt::Debug for Tracker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tracker")
            .field("seg", &self.seg)
            .field("len", &self.len)
            .field("lines", &self.lines)
            .finish_non_exhaustive()
    }
}

impl Tracker {
    fn new(seg: Arc<Segment>, len: u64, lines: u64, hash: Hash32, next_cut: u64) -> Tracker {
        Tracker {
            seg,
            len,
            lines,
            partial: 0,
            chain: Chain::new(hash),
            cut_lines: lines,
            fps: Vec::new(),
            fps_overflow: false,
            next_cut,
            boundary: Vec::new(),
        }
    }

    /// Hashes bytes just appended to the log, in file order. Call it with
    /// exactly what was written, under the same lock as the write.
    pub fn observe(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|&b| b == b'\n') {
            let (line, rest) = bytes.split_at(end + 1);
            self.chain.update(line);
            let fp = self.chain.end_line();
            if self.fps.len() < MAX_FP_LINES {
                self.fps.push(fp);
            } else {
                self.fps_overflow = true;
            }
            self.len += self.partial + line.len() as u64;
            self.lines += 1;
            self.partial = 0;
            bytes = rest;
        }
        if !bytes.is_empty() {
            self.chain.update(bytes);
            self.partial += bytes.len() as u64;
        }
    }

    /// Lines written to the current file (after `skip`), complete ones only.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Whether lines were written since the last cut.
    pub fn has_new_lines(&self) -> bool {
        self.lines > self.cut_lines
    }

    fn take_cut(&mut self, why: Why) -> Cut {
        let fps = std::mem::take(&mut self.fps);
        let cut = Cut {
            n: self.next_cut,
            seg: Arc::clone(&self.seg),
            why,
            len: self.len,
            lines: self.lines,
            hash: self.chain.hash,
            fps: (!self.fps_overflow).then_some(fps),
        };
        self.fps_overflow = false;
        self.next_cut += 1;
        self.cut_lines = self.lines;
        cut
    }

    /// The periodic cut: any boundary cuts from [`Tracker::reopened`], then
    /// one for the lines written since the last cut, if there are any.
    pub fn cut(&mut self) -> Vec<Cut> {
        let mut cuts = std::mem::take(&mut self.boundary);
        if self.has_new_lines() {
            cuts.push(self.take_cut(Why::Interval));
        }
        cuts
    }

    /// The final cut at shutdown: always one seal, even with no new lines,
    /// so the chain records a clean stop.
    pub fn shutdown(&mut self) -> Vec<Cut> {
        let mut cuts = std::mem::take(&mut self.boundary);
        cuts.push(self.take_cut(Why::Shutdown));
        cuts
    }

    /// The writer reopened the log path (SIGHUP) and now writes to the file
    /// `id`, which held `size` bytes when opened. The same file (nothing was
    /// rotated) gets a `reopen` seal; another file ends this one with a
    /// `rotate` seal and becomes the next file of the chain, its first
    /// `size` bytes not sealed (normally 0). The cuts are handed out by the
    /// next [`Tracker::cut`].
    pub fn reopened(&mut self, id: FileId, size: u64) {
        if id == self.seg.id && size == self.len + self.partial {
            let cut = self.take_cut(Why::Reopen);
            self.boundary.push(cut);
            return;
        }
        let cut = self.take_cut(Why::Rotate);
        self.boundary.push(cut);
        self.seg = Arc::new(Segment {
            fileno: self.seg.fileno + 1,
            path: self.seg.path.clone(),
            id,
            skip: size,
        });
        self.len = size;
        self.lines = 0;
        self.cut_lines = 0;
        self.partial = 0;
        // An unfinished line of the old file stays there, unsealed.
        self.chain = Chain::new(self.chain.hash);
    }
}

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

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SealError + 'a {
    move |source| SealError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// The sidecar path of a log: `<log>.seal`.
pub fn seal_path(log: &Path) -> PathBuf {
    let mut name = log.as_os_str().to_owned();
    name.push(".seal");
    PathBuf::from(name)
}

/// The persisted sealing state: everything needed to continue the chain.
struct State {
    /// Number of the next seal.
    next_seq: u64,
    /// `k_{next_seq}`.
    key: Key,
    /// SHA-256 of the last seal line (zeros before the first).
    prev: Hash32,
    /// Running hash at the last seal.
    hash: Hash32,
    /// The file of the last seal, if any.
    seg: Option<Segment>,
    /// Bytes of that file sealed.
    len: u64,
    /// Lines of that file sealed.
    lines: u64,
    /// Identity of the sidecar holding (or about to hold) the last seal.
    sidecar: Option<FileId>,
    /// The last seal line, so a crash before it reached the sidecar loses
    /// nothing (it is already MACed; it reveals no key).
    last: Option<String>,
}

impl State {
    fn fresh(key: Key) -> State {
        State {
            next_seq: 0,
            key,
            prev: ZERO,
            hash: ZERO,
            seg: None,
            len: 0,
            lines: 0,
            sidecar: None,
            last: None,
        }
    }

    fn render(&self) -> Zeroizing<String> {
        // Sized up front: a growing String reallocates and frees its old
        // buffer, key included, without zeroizing it.
        let room = 1024 + self.last.as_ref().map_or(0, String::len);
        let mut s = Zeroizing::new(String::with_capacity(room));
        let dash = || "-".to_owned();
        s.push_str(STATE_MAGIC);
        s.push('\n');
        s.push_str(&format!("next={}\n", self.next_seq));
        s.push_str("key=");
        s.push_str(&self.key.to_hex());
        s.push('\n');
        s.push_str(&format!("prev={}\n", hex::encode(self.prev)));
        s.push_str(&format!("hash={}\n", hex::encode(self.hash)));
        match &self.seg {
            None => s.push_str("file=-\n"),
            Some(seg) => s.push_str(&format!(
                "file={} {} {} {} {}\n",
                seg.fileno,
                seg.id.dev,
                seg.id.ino,
                seg.skip,
                hex::encode(seg.path.as_os_str().as_bytes())
            )),
        }
        s.push_str(&format!("len={}\n", self.len));
        s.push_str(&format!("lines={}\n", self.lines));
        s.push_str(&format!(
            "sidecar={}\n",
            self.sidecar
                .map_or_else(dash, |id| format!("{} {}", id.dev, id.ino))
        ));
        s.push_str(&format!(
            "last={}\n",
            self.last.clone().unwrap_or_else(dash)
        ));
        s
    }

    fn parse(text: &str) -> Result<State, String> {
        let mut lines = text.lines();
        if lines.next() != Some(STATE_MAGIC) {
            return Err(format!("the first line is not `{STATE_MAGIC}`"));
        }
        let mut field = |name: &str| -> Result<&str, String> {
            lines
                .next()
                .and_then(|l| l.strip_prefix(name))
                .and_then(|l| l.strip_prefix('='))
                .ok_or_else(|| format!("no `{name}=` line where expected"))
        };
        let num = |t: &str| {
            t.parse::<u64>()
                .map_err(|_| format!("`{t}` is not a number"))
        };
        let hash = |t: &str| {
            let mut out = [0u8; KEY_LEN];
            hex::decode_to_slice(t, &mut out).map_err(|_| "a hash is not 64 hex digits")?;
            Ok::<_, String>(out)
        };
        let next_seq = num(field("next")?)?;
        let key = Key::from_hex(field("key")?).map_err(|e| e.to_string())?;
        let prev = hash(field("prev")?)?;
        let hash_v = hash(field("hash")?)?;
        let seg = match field("file")? {
            "-" => None,
            text => {
                let parts: Vec<&str> = text.split(' ').collect();
                let [fileno, dev, ino, skip, path] = parts[..] else {
                    return Err("the `file` line does not have 5 parts".into());
                };
                let path = hex::decode(path).map_err(|_| "the file path is not hex")?;
                Some(Segment {
                    fileno: num(fileno)?,
                    path: PathBuf::from(std::ffi::OsStr::from_bytes(&path)),
                    id: FileId {
                        dev: num(dev)?,
                        ino: num(ino)?,
                    },
                    skip: num(skip)?,
                })
            }
        };
        let len = num(field("len")?)?;
        let lines_v = num(field("lines")?)?;
        let sidecar = match field("sidecar")? {
            "-" => None,
            text => {
                let (dev, ino) = text.split_once(' ').ok_or("bad `sidecar` line")?;
                Some(FileId {
                    dev: num(dev)?,
                    ino: num(ino)?,
                })
            }
        };
        let last = match field("last")? {
            "-" => None,
            line => Some(line.to_owned()),
        };
        if next_seq > 0 && (seg.is_none() || last.is_none() || sidecar.is_none()) {
            return Err("seals were made but the file, sidecar or last seal is missing".into());
        }
        Ok(State {
            next_seq,
            key,
            prev,
            hash: hash_v,
            seg,
            len,
            lines: lines_v,
            sidecar,
            last,
        })
    }

    fn load(path: &Path) -> Result<State, SealError> {
        let mut file = File::open(path).map_err(io_err("open the sealing state", path))?;
        let meta = file
            .metadata()
            .map_err(io_err("stat the sealing state", path))?;
        let mode = meta.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(SealError::StatePermissions {
                path: path.to_path_buf(),
                mode: mode & 0o7777,
            });
        }
        // Sized up front so no reallocation leaves a copy of the key behind.
        let room = usize::try_from(meta.len()).unwrap_or(0) + 1;
        let mut text = Zeroizing::new(String::with_capacity(room));
        file.read_to_string(&mut text)
            .map_err(io_err("read the sealing state", path))?;
        State::parse(&text).map_err(|why| SealError::StateCorrupt {
            path: path.to_path_buf(),
            why,
        })
    }

    /// Replaces the state file atomically: temp file (0600) + fsync +
    /// rename + fsync of the directory; then overwrites the old file's bytes
    /// with zeros, so the old key does not linger in its blocks (best
    /// effort: copy-on-write file systems and SSDs may keep old blocks).
    fn save(&self, path: &Path) -> Result<(), SealError> {
        let text = self.render();
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(".tmp");
        let tmp = PathBuf::from(tmp_name);
        match std::fs::remove_file(&tmp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("remove the stale temporary state", &tmp)(e)),
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err("create the temporary state", &tmp))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io_err("write the temporary state", &tmp))?;
        drop(file);
        // Held open across the rename so its bytes can be wiped afterwards.
        let old = OpenOptions::new().write(true).open(path).ok();
        std::fs::rename(&tmp, path).map_err(io_err("replace the sealing state", path))?;
        sync_dir(path).map_err(io_err("sync the directory of", path))?;
        if let Some(mut old) = old {
            wipe(&mut old).map_err(io_err("wipe the previous sealing state", path))?;
        }
        Ok(())
    }
}

/// Overwrites a (now unlinked) file's bytes with zeros and syncs them.
fn wipe(file: &mut File) -> io::Result<()> {
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
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Writes the initial state (`k_0`, no seals) to `path`, mode 0600, and
/// returns the key to print: the verification key.
///
/// # Errors
///
/// [`SealError::StateExists`] if `path` exists (never overwritten), an I/O
/// error, or no randomness.
pub fn keygen(path: &Path) -> Result<Key, SealError> {
    let key = Key::generate().map_err(SealError::Random)?;
    let state = State::fresh(Key(key.0.clone()));
    let text = state.render();
    let mut file = match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(SealError::StateExists(path.to_path_buf()))
        }
        Err(e) => return Err(io_err("create the sealing state", path)(e)),
    };
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io_err("write the sealing state", path))?;
    sync_dir(path).map_err(io_err("sync the directory of", path))?;
    Ok(key)
}

/// The first entry of `dir` that is the file `id`, if any.
fn find_by_id(dir: &Path, id: FileId) -> io::Result<Option<PathBuf>> {
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

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// Reads a sidecar: its complete lines and any torn tail (bytes after the
/// last newline).
fn read_sidecar(path: &Path) -> io::Result<Option<(Vec<String>, Vec<u8>)>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let cut = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let (complete, torn) = bytes.split_at(cut);
    let lines = String::from_utf8_lossy(complete)
        .lines()
        .map(str::to_owned)
        .collect();
    Ok(Some((lines, torn.to_vec())))
}

/// What one call of [`Sealer::seal`] sealed, for the server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sealed {
    /// The seal's number.
    pub seq: u64,
    /// The file number in the chain.
    pub fileno: u64,
    /// Why it was made.
    pub why: Why,
    /// Lines of the file it covers, from the file's start.
    pub lines: u64,
    /// Where the finished file's sidecar was moved, after a `rotate` seal.
    pub moved_sidecar: Option<PathBuf>,
}

/// What [`Sealer::open`] found and did, for the server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// The number the next seal will have.
    pub next_seq: u64,
    /// The log is a different file than the last one sealed (rotated while
    /// stopped, or the first file of a new chain).
    pub new_file: bool,
    /// Lines found after the last seal, now sealed with `why=start`.
    pub adopted_lines: u64,
    /// A seal record saved in the state but missing from the sidecar (a
    /// crash mid-seal) was appended.
    pub repaired_sidecar: bool,
    /// Where the previous file's sidecar was moved, if it was.
    pub moved_sidecar: Option<PathBuf>,
}

/// An open sidecar.
struct Sidecar {
    /// Opened for appending.
    file: File,
    /// Its path when opened (may have been renamed since).
    path: PathBuf,
    /// Its identity, saved in the state to find it after a rename.
    id: FileId,
}

/// The sealing-thread half: makes seal records, persists the ratchet.
pub struct Sealer {
    /// The state file.
    state_path: PathBuf,
    /// `k_{next_seq}`; the only copy in memory.
    key: Key,
    /// The next seal's number.
    next_seq: u64,
    /// SHA-256 of the last seal line.
    prev: Hash32,
    /// The file of the last seal.
    seg: Option<Arc<Segment>>,
    /// Where the sealer appends.
    sidecar: Option<Sidecar>,
    /// A record saved in the state but not yet in the sidecar.
    unwritten: Option<String>,
    /// Cuts not yet sealed (after an error, retried on the next call).
    queue: VecDeque<Cut>,
    /// The next cut number expected.
    next_cut: u64,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("state_path", &self.state_path)
            .field("next_seq", &self.next_seq)
            .field("queued", &self.queue.len())
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// Resumes sealing from the state at `state_path` for the audit log at
    /// `log_path`, which must exist (open the audit log first) and must not
    /// be written until this returns. Completes a seal a crash interrupted,
    /// seals (`why=start`) any lines after the last seal, and returns the
    /// sealer (for the sealing thread) and the tracker (for the writer).
    ///
    /// # Errors
    ///
    /// [`SealError`]: state missing, unreadable, too permissive or corrupt;
    /// the log truncated below its seals; the sidecar not matching the
    /// state; I/O errors.
    pub fn open(
        state_path: &Path,
        log_path: &Path,
        now: SystemTime,
    ) -> Result<(Sealer, Tracker, Resumed), SealError> {
        let state = State::load(state_path)?;
        let mut resumed = Resumed {
            next_seq: 0,
            new_file: false,
            adopted_lines: 0,
            repaired_sidecar: false,
            moved_sidecar: None,
        };
        let mut sealer = Sealer {
            state_path: state_path.to_path_buf(),
            key: state.key,
            next_seq: state.next_seq,
            prev: state.prev,
            seg: state.seg.map(Arc::new),
            sidecar: None,
            unwritten: None,
            queue: VecDeque::new(),
            next_cut: 0,
        };
        if let (Some(last), Some(id), Some(seg)) = (state.last, state.sidecar, sealer.seg.clone()) {
            resumed.repaired_sidecar = sealer.settle(&seg, id, &last)?;
        }
        let mut log = File::open(log_path).map_err(io_err("open the audit log", log_path))?;
        let log_id = FileId::of(&log).map_err(io_err("stat the audit log", log_path))?;
        let size = log
            .metadata()
            .map_err(io_err("stat the audit log", log_path))?
            .len();
        let same_file = sealer
            .seg
            .clone()
            .filter(|s| s.path == log_path && s.id == log_id);
        let mut tracker = match same_file {
            Some(seg) => {
                if size < state.len {
                    return Err(SealError::LogTruncated {
                        path: log_path.to_path_buf(),
                        size,
                        sealed: state.len,
                    });
                }
                Tracker::new(seg, state.len, state.lines, state.hash, 0)
            }
            None => {
                resumed.new_file = true;
                if let Some(old) = sealer.seg.clone() {
                    sealer.sidecar = None;
                    resumed.moved_sidecar = retire_sidecar(&old, log_path)?;
                }
                let seg = Arc::new(Segment {
                    fileno: sealer.seg.as_ref().map_or(0, |s| s.fileno + 1),
                    path: log_path.to_path_buf(),
                    id: log_id,
                    skip: 0,
                });
                Tracker::new(seg, 0, 0, state.hash, 0)
            }
        };
        let start = tracker.len;
        log.seek(SeekFrom::Start(start))
            .map_err(io_err("read the audit log", log_path))?;
        let mut reader = log.take(size - start);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = reader
                .read(&mut buf)
                .map_err(io_err("read the audit log", log_path))?;
            if n == 0 {
                break;
            }
            tracker.observe(&buf[..n]);
        }
        if tracker.has_new_lines() {
            resumed.adopted_lines = tracker.lines - tracker.cut_lines;
            let cut = tracker.take_cut(Why::Start);
            sealer.seal(vec![cut], now)?;
        }
        resumed.next_seq = sealer.next_seq;
        Ok((sealer, tracker, resumed))
    }

    /// The number the next seal will have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Makes sure the sidecar ends with `last` (the record the state says
    /// was made last), appending it if a crash kept it out, and opens it.
    fn settle(&mut self, seg: &Arc<Segment>, id: FileId, last: &str) -> Result<bool, SealError> {
        let by_name = seal_path(&seg.path);
        let path = if FileId::at(&by_name).map_err(io_err("stat", &by_name))? == Some(id) {
            by_name
        } else {
            let dir = dir_of(&seg.path);
            find_by_id(dir, id)
                .map_err(io_err("search the directory of", &seg.path))?
                .ok_or_else(|| SealError::SidecarMismatch {
                    path: by_name.clone(),
                    why: format!("the seal file holding seal {} is gone", self.next_seq - 1),
                })?
        };
        let (lines, torn) = read_sidecar(&path)
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
        if !torn.is_empty() {
            if !last.as_bytes().starts_with(&torn) {
                return Err(mismatch(
                    "it ends in a partial line that is not the last seal".into(),
                ));
            }
            let keep = file.metadata().map_err(io_err("stat", &path))?.len() - torn.len() as u64;
            file.set_len(keep)
                .map_err(io_err("cut the torn seal record from", &path))?;
        }
        let repaired = match lines.last() {
            Some(line) if line == last => false,
            found => {
                let record = Record::parse(last).map_err(|e| SealError::StateCorrupt {
                    path: self.state_path.clone(),
                    why: format!("its last seal: {e}"),
                })?;
                let follows = match found {
                    None => true,
                    Some(line) => sha256(line.as_bytes()) == record.prev,
                };
                if !follows {
                    return Err(mismatch(format!(
                        "its last record is neither seal {} nor the one before it",
                        record.seq
                    )));
                }
                true
            }
        };
        self.sidecar = Some(Sidecar { file, path, id });
        if repaired {
            self.unwritten = Some(last.to_owned());
            self.flush_unwritten()?;
        } else if !torn.is_empty() {
            self.sync_sidecar()?;
        }
        Ok(repaired)
    }

    fn sync_sidecar(&mut self) -> Result<(), SealError> {
        if let Some(s) = &self.sidecar {
            s.file
                .sync_data()
                .map_err(io_err("sync the seal file", &s.path))?;
        }
        Ok(())
    }

    /// Appends a record saved in the state but not yet written, and fsyncs.
    fn flush_unwritten(&mut self) -> Result<(), SealError> {
        let Some(line) = self.unwritten.as_ref() else {
            return Ok(());
        };
        let Some(sidecar) = self.sidecar.as_mut() else {
            return Err(SealError::SidecarMismatch {
                path: self.state_path.clone(),
                why: "no seal file is open".into(),
            });
        };
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        sidecar
            .file
            .write_all(&bytes)
            .and_then(|()| sidecar.file.sync_data())
            .map_err(io_err("append to the seal file", &sidecar.path))?;
        self.unwritten = None;
        Ok(())
    }

    /// Seals `cuts` (from [`Tracker::cut`], [`Tracker::shutdown`]) in order,
    /// stamping them with `now`. Does file I/O and fsyncs: call it outside
    /// the writer's lock, from one thread.
    ///
    /// On error, the cuts not sealed are kept and retried first by the next
    /// call (merged with newer ones where one seal can cover both); the key
    /// only evolves once the state holding the next key is durably saved.
    ///
    /// # Errors
    ///
    /// [`SealError`]: I/O errors on the state or the sidecar, or cuts out of
    /// order (not in the order the tracker made them).
    pub fn seal(&mut self, cuts: Vec<Cut>, now: SystemTime) -> Result<Vec<Sealed>, SealError> {
        for cut in cuts {
            self.enqueue(cut)?;
        }
        self.flush_unwritten()?;
        let mut done = Vec::new();
        while let Some(cut) = self.queue.pop_front() {
            done.push(self.seal_one(cut, now)?);
        }
        Ok(done)
    }

    /// Queues a cut, merging it into an unsealed interval cut of the same
    /// file left by an earlier failure (one seal then covers both).
    fn enqueue(&mut self, cut: Cut) -> Result<(), SealError> {
        if cut.n != self.next_cut {
            return Err(SealError::OutOfOrder {
                expected: self.next_cut,
                got: cut.n,
            });
        }
        self.next_cut += 1;
        if let Some(back) = self.queue.back_mut() {
            if back.why == Why::Interval && back.seg.fileno == cut.seg.fileno {
                let fps = match (back.fps.take(), cut.fps.as_ref()) {
                    (Some(mut a), Some(b)) if a.len() + b.len() <= MAX_FP_LINES => {
                        a.extend_from_slice(b);
                        Some(a)
                    }
                    _ => None,
                };
                *back = Cut { fps, ..cut };
                return Ok(());
            }
        }
        self.queue.push_back(cut);
        Ok(())
    }

    /// Seals one cut. If it fails before the new state is saved, the cut
    /// goes back to the front of the queue; after that, it is sealed and
    /// only the append (kept in `unwritten`) or the sidecar move is retried.
    fn seal_one(&mut self, cut: Cut, now: SystemTime) -> Result<Sealed, SealError> {
        let (line, record) = match self.commit(&cut, now) {
            Ok(made) => made,
            Err(e) => {
                self.queue.push_front(cut);
                return Err(e);
            }
        };
        self.unwritten = Some(line);
        self.flush_unwritten()?;
        let moved_sidecar = if cut.why == Why::Rotate {
            self.sidecar = None;
            retire_sidecar(&cut.seg, &cut.seg.path)?
        } else {
            None
        };
        Ok(Sealed {
            seq: record.seq,
            fileno: record.fileno,
            why: record.why,
            lines: record.lines,
            moved_sidecar,
        })
    }

    /// Makes the record with `k_i`, saves the state holding `k_{i+1}` and
    /// the record, then erases `k_i`. Returns the line to append.
    fn commit(&mut self, cut: &Cut, now: SystemTime) -> Result<(String, Record), SealError> {
        let new_file = self.seg.as_ref().is_none_or(|s| s.fileno != cut.seg.fileno);
        if new_file || self.sidecar.is_none() {
            self.open_sidecar(&cut.seg)?;
        }
        let sidecar_id = self.sidecar.as_ref().map(|s| s.id);
        let mut record = Record {
            seq: self.next_seq,
            fileno: cut.seg.fileno,
            why: cut.why,
            time: humantime::format_rfc3339_micros(now).to_string(),
            file: encode_path(&cut.seg.path),
            skip: cut.seg.skip,
            len: cut.len,
            lines: cut.lines,
            hash: cut.hash,
            prev: self.prev,
            fps: cut.fps.clone(),
            mac: ZERO,
        };
        record.sign(&self.key);
        let line = record.to_line();
        let line_hash = sha256(line.as_bytes());
        let state = State {
            next_seq: self.next_seq + 1,
            key: self.key.step(),
            prev: line_hash,
            hash: cut.hash,
            seg: Some((*cut.seg).clone()),
            len: cut.len,
            lines: cut.lines,
            sidecar: sidecar_id,
            last: Some(line.clone()),
        };
        state.save(&self.state_path)?;
        // Durable: the chain has moved on. Dropping the old key erases it.
        self.key = state.key;
        self.next_seq += 1;
        self.prev = line_hash;
        self.seg = Some(Arc::clone(&cut.seg));
        Ok((line, record))
    }

    /// Opens `<log>.seal` for the file `seg`, creating it; a sidecar left
    /// there by an earlier file is moved away first.
    fn open_sidecar(&mut self, seg: &Arc<Segment>) -> Result<(), SealError> {
        let path = seal_path(&seg.path);
        if let Some((lines, _)) = read_sidecar(&path).map_err(io_err("read", &path))? {
            if let Some(last) = lines.last() {
                match Record::parse(last) {
                    Ok(r) if r.fileno == seg.fileno => {}
                    Ok(r) if r.fileno < seg.fileno => {
                        if let Some(old) = self.seg.clone().filter(|s| s.fileno == r.fileno) {
                            retire_sidecar(&old, &seg.path)?;
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
        }
        let file = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io_err("create the seal file", &path))?;
        sync_dir(&path).map_err(io_err("sync the directory of", &path))?;
        let id = FileId::of(&file).map_err(io_err("stat", &path))?;
        self.sidecar = Some(Sidecar { file, path, id });
        Ok(())
    }
}

/// After the file `old` got its last seal, moves its sidecar `<old
/// path>.seal` beside the file under its new name (`<rotated name>.seal`,
/// found by inode), so the next file starts a sidecar of its own. A sidecar
/// already moved (the operator rotated it with the log) or holding another
/// file's seals is left alone. When the file cannot be found (deleted, moved
/// to another directory) or truncated in place, the sidecar becomes
/// `<path>.seal.orphan-<fileno>`, for the operator to pair by hand.
fn retire_sidecar(old: &Segment, next_path: &Path) -> Result<Option<PathBuf>, SealError> {
    let path = seal_path(&old.path);
    let Some((lines, _)) = read_sidecar(&path).map_err(io_err("read", &path))? else {
        return Ok(None);
    };
    match lines.last().map(|l| Record::parse(l)) {
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
        None => {
            let mut n = 0u32;
            loop {
                let mut name = path.as_os_str().to_owned();
                name.push(format!(".orphan-{}", old.fileno));
                if n > 0 {
                    name.push(format!("-{n}"));
                }
                let candidate = PathBuf::from(name);
                if FileId::at(&candidate)
                    .map_err(io_err("stat", &candidate))?
                    .is_none()
                {
                    break candidate;
                }
                n += 1;
            }
        }
    };
    std::fs::rename(&path, &target).map_err(io_err("move the seal file", &path))?;
    sync_dir(&path).map_err(io_err("sync the directory of", &path))?;
    Ok(Some(target))
}

// ---------------------------------------------------------------------------
// Verification
// ---------------------------------------------------------------------------

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

impl Walk<'_> {
    fn file(&mut self, log: &Path, is_last: bool, report: &mut Report) -> Result<(), Failure> {
        let fail = |line: u64, problem: Problem| Failure {
            file: log.to_path_buf(),
            line,
            problem,
        };
        let unreadable = |path: &Path, e: io::Error| {
            fail(
                0,
                Problem::Unreadable {
                    path: path.to_path_buf(),
                    why: e.to_string(),
                },
            )
        };
        let file = File::open(log).map_err(|e| unreadable(log, e))?;
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
            None => return Err(fail(0, Problem::MissingSealFile(sidecar))),
        };
        let mut sealed_len = 0u64;
        let mut sealed_lines = 0u64;
        let mut last_why: Option<(Why, u64)> = None;
        let mut file_skip: Option<u64> = None;
        let mut fileno: Option<u64> = None;
        for (at, text) in &records {
            let here = sealed_lines + 1;
            let record = Record::parse(text)
                .map_err(|e| fail(here, Problem::Malformed { at: *at, why: e.0 }))?;
            let seq = record.seq;
            if let Some((Why::Rotate, _)) = last_why {
                return Err(fail(here, Problem::SealAfterFinal { seq }));
            }
            if seq != self.seq {
                let problem = if !self.started {
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
                };
                return Err(fail(here, problem));
            }
            // Authenticate before believing any field.
            if !record.verifies(self.key) {
                return Err(fail(here, Problem::BadMac { seq }));
            }
            if record.prev != self.prev {
                return Err(fail(here, Problem::BrokenChain { seq }));
            }
            let expected_fileno = fileno.unwrap_or(self.fileno);
            if record.fileno != expected_fileno {
                return Err(fail(
                    here,
                    Problem::WrongFile {
                        seq,
                        found: record.fileno,
                        expected: expected_fileno,
                    },
                ));
            }
            match file_skip {
                None => {
                    let skipped = lines.skip(record.skip).map_err(|e| unreadable(log, e))?;
                    if skipped < record.skip {
                        return Err(fail(
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
                    sealed_len = record.skip;
                    file_skip = Some(record.skip);
                    fileno = Some(record.fileno);
                }
                Some(skip) if skip != record.skip => {
                    return Err(fail(here, Problem::Backwards { seq }));
                }
                Some(_) => {}
            }
            if record.len < sealed_len || record.lines < sealed_lines {
                return Err(fail(here, Problem::Backwards { seq }));
            }
            self.check_span(log, &mut lines, &record, sealed_len, sealed_lines)?;
            if record.why == Why::Start && record.lines > sealed_lines {
                report.late.push(Span {
                    file: log.to_path_buf(),
                    first: sealed_lines + 1,
                    last: record.lines,
                });
            }
            sealed_len = record.len;
            sealed_lines = record.lines;
            self.hash = record.hash;
            self.prev = sha256(text.as_bytes());
            self.seq += 1;
            self.key.advance();
            self.started = true;
            report.seals += 1;
            report.last_seal = Some(record.time.clone());
            last_why = Some((record.why, seq));
        }
        // What follows the last seal.
        let mut tail = 0u64;
        while lines.next_line().map_err(|e| unreadable(log, e))?.is_some() {
            tail += 1;
        }
        if tail > 0 {
            if let Some((Why::Rotate, seq)) = last_why {
                return Err(fail(sealed_lines + 1, Problem::AfterFinal { seq }));
            }
            report.unsealed.push(Span {
                file: log.to_path_buf(),
                first: sealed_lines + 1,
                last: sealed_lines + tail,
            });
        }
        report.lines += sealed_lines + tail;
        if let Some(n) = fileno {
            self.fileno = n + 1;
        }
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
        let fail = |line: u64, problem: Problem| Failure {
            file: log.to_path_buf(),
            line,
            problem,
        };
        let io_fail = |e: io::Error| {
            fail(
                0,
                Problem::Unreadable {
                    path: log.to_path_buf(),
                    why: e.to_string(),
                },
            )
        };
        let want = record.lines - from_lines;
        let mut chain = Chain::new(self.hash);
        let mut crcs = Vec::new();
        let mut bytes = 0u64;
        let mut short = false;
        for _ in 0..want {
            match lines.next_line().map_err(io_fail)? {
                Some(line) => {
                    if !line.ends_with(b"\n") {
                        short = true;
                    }
                    bytes += line.len() as u64;
                    crcs.push(chain.line(&line));
                }
                None => {
                    short = true;
                    break;
                }
            }
        }
        if !short && bytes == record.len - from_len && chain.hash == record.hash {
            return Ok(());
        }
        let seq = record.seq;
        let truncated = Problem::Truncated {
            seq,
            size: lines.pos,
            len: record.len,
            lines: record.lines,
        };
        let Some(fps) = &record.fps else {
            if short {
                return Err(fail(lines.line_no + 1, truncated));
            }
            return Err(fail(
                from_lines + 1,
                Problem::Differs {
                    seq,
                    first: from_lines + 1,
                    last: record.lines,
                },
            ));
        };
        let first_bad = crcs
            .iter()
            .zip(fps.iter())
            .position(|(got, want)| got != want);
        match first_bad {
            // Only the last, partial line differs, or none: the file ends early.
            Some(k) if short && k + 1 == crcs.len() => {
                Err(fail(from_lines + k as u64 + 1, truncated))
            }
            None if short => Err(fail(lines.line_no + 1, truncated)),
            Some(k) => {
                let at = from_lines + k as u64 + 1;
                // Look-ahead: the file's line after this one, which may lie
                // beyond this seal's span (still unread).
                let next_crc = match crcs.get(k + 1) {
                    Some(c) => Some(*c),
                    None => lines.peek(0).map_err(io_fail)?.map(crc32fast::hash),
                };
                let problem = if fps.get(k + 1) == Some(&crcs[k]) {
                    Problem::Removed { seq }
                } else if next_crc == Some(fps[k]) {
                    Problem::Inserted { seq }
                } else {
                    Problem::Changed { seq }
                };
                Err(fail(at, problem))
            }
            None => Err(fail(
                from_lines + 1,
                Problem::Differs {
                    seq,
                    first: from_lines + 1,
                    last: record.lines,
                },
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// A sealed log driven the way the audit writer will drive it.
    struct Rig {
        dir: tempfile::TempDir,
        log: PathBuf,
        state: PathBuf,
        file: File,
        tracker: Tracker,
        sealer: Sealer,
        key0: Key,
        n: u64,
    }

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_790_000_000 + secs)
    }

    fn append_open(path: &Path) -> File {
        OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap()
    }

    impl Rig {
        fn new() -> Rig {
            let dir = tempfile::tempdir().unwrap();
            let log = dir.path().join("audit.log");
            let state = dir.path().join("seal.state");
            let key0 = keygen(&state).unwrap();
            let file = append_open(&log);
            let (sealer, tracker, resumed) = Sealer::open(&state, &log, at(0)).unwrap();
            assert_eq!(resumed.next_seq, 0);
            Rig {
                dir,
                log,
                state,
                file,
                tracker,
                sealer,
                key0,
                n: 0,
            }
        }

        fn write(&mut self, count: u64) {
            for _ in 0..count {
                self.n += 1;
                let line = format!(
                    "2026-11-23T19:14:17.{:06}Z 127.0.0.1:4{:04} T '{}' is a prime number\n",
                    self.n, self.n, self.n
                );
                self.file.write_all(line.as_bytes()).unwrap();
                self.tracker.observe(line.as_bytes());
            }
        }

        fn seal(&mut self) -> Vec<Sealed> {
            let cuts = self.tracker.cut();
            self.sealer.seal(cuts, at(self.n)).unwrap()
        }

        fn shutdown(&mut self) {
            let cuts = self.tracker.shutdown();
            self.sealer.seal(cuts, at(self.n)).unwrap();
        }

        /// Simulates `kill -9` and a restart.
        fn restart(&mut self) -> Resumed {
            let (sealer, tracker, resumed) =
                Sealer::open(&self.state, &self.log, at(self.n)).unwrap();
            self.sealer = sealer;
            self.tracker = tracker;
            self.file = append_open(&self.log);
            resumed
        }

        fn verify(&self) -> Result<Report, Failure> {
            verify(&self.key0, std::slice::from_ref(&self.log))
        }

        fn seal_lines(&self) -> Vec<String> {
            read_sidecar(&seal_path(&self.log)).unwrap().unwrap().0
        }

        fn set_seal_lines(&self, lines: &[String]) {
            let mut text = lines.join("\n");
            text.push('\n');
            std::fs::write(seal_path(&self.log), text).unwrap();
        }

        fn log_lines(&self) -> Vec<String> {
            std::fs::read_to_string(&self.log)
                .unwrap()
                .lines()
                .map(|l| format!("{l}\n"))
                .collect()
        }

        fn set_log_lines(&self, lines: &[String]) {
            std::fs::write(&self.log, lines.concat()).unwrap();
        }
    }

    fn problem(result: Result<Report, Failure>) -> (u64, Problem) {
        let failure = result.expect_err("tampering must be caught");
        (failure.line, failure.problem)
    }

    #[test]
    fn key_steps_are_deterministic_distinct_and_hex_roundtrips() {
        let k0 = Key::generate().unwrap();
        let k1 = k0.step();
        assert_ne!(k0.0.as_ref(), k1.0.as_ref());
        assert_eq!(k0.step().0.as_ref(), k1.0.as_ref());
        let mut k = Key(k0.0.clone());
        k.advance();
        assert_eq!(k.0.as_ref(), k1.0.as_ref());
        // The step is SHA-256 of the tag and the key, as documented.
        let mut h = Sha256::new();
        h.update(b"prime-audit key step v1\0");
        h.update(k0.0.as_ref());
        assert_eq!(k1.0.as_ref(), &<Hash32>::from(h.finalize()));
        let again = Key::from_hex(&format!(" {}\n", k0.to_hex().as_str())).unwrap();
        assert_eq!(again.0.as_ref(), k0.0.as_ref());
        assert_eq!(Key::from_hex("abc").unwrap_err(), KeyError::BadHex);
        assert_eq!(
            Key::from_hex(&"g".repeat(64)).unwrap_err(),
            KeyError::BadHex
        );
        assert_eq!(format!("{k0:?}"), "Key(..)");
    }

    #[test]
    fn a_mac_verifies_only_with_its_own_key() {
        let k0 = Key::generate().unwrap();
        let tag = k0.mac(b"message");
        assert!(k0.verifies(b"message", &tag));
        assert!(!k0.verifies(b"messagf", &tag));
        assert!(!k0.step().verifies(b"message", &tag));
        assert!(!k0.verifies(b"message", &tag[..31]));
    }

    fn sample_record() -> Record {
        Record {
            seq: 7,
            fileno: 2,
            why: Why::Rotate,
            time: "2026-11-23T19:14:18.000123Z".into(),
            file: encode_path(Path::new("/var/log/prime server/a.log")),
            skip: 0,
            len: 140,
            lines: 2,
            hash: [0xab; 32],
            prev: [0x01; 32],
            fps: Some(vec![0xdeadbeef, 7]),
            mac: [0x5a; 32],
        }
    }

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

    #[test]
    fn the_running_hash_is_the_documented_line_chain_whatever_the_chunks() {
        let text = b"one\ntwo two\n\nthree\n";
        let mut expected = ZERO;
        for line in [&b"one\n"[..], b"two two\n", b"\n", b"three\n"] {
            let mut h = Sha256::new();
            h.update(expected);
            h.update(line);
            expected = h.finalize().into();
        }
        let seg = Arc::new(Segment {
            fileno: 0,
            path: "x".into(),
            id: FileId { dev: 1, ino: 1 },
            skip: 0,
        });
        let mut whole = Tracker::new(Arc::clone(&seg), 0, 0, ZERO, 0);
        whole.observe(text);
        let mut bytewise = Tracker::new(seg, 0, 0, ZERO, 0);
        for b in text {
            bytewise.observe(std::slice::from_ref(b));
        }
        let a = whole.cut().pop().unwrap();
        let b = bytewise.cut().pop().unwrap();
        assert_eq!(a.hash, expected);
        assert_eq!(b.hash, expected);
        assert_eq!((a.len, a.lines), (text.len() as u64, 4));
        assert_eq!((b.len, b.lines), (a.len, a.lines));
        assert_eq!(a.fps, b.fps);
        assert_eq!(a.fps.unwrap()[0], crc32fast::hash(b"one\n"));
    }

    #[test]
    fn a_partial_line_is_not_sealed_until_it_ends_and_cuts_only_come_with_new_lines() {
        let seg = Arc::new(Segment {
            fileno: 0,
            path: "x".into(),
            id: FileId { dev: 1, ino: 1 },
            skip: 0,
        });
        let mut t = Tracker::new(seg, 0, 0, ZERO, 0);
        assert!(t.cut().is_empty());
        t.observe(b"half");
        assert!(t.cut().is_empty());
        t.observe(b" line\nnext");
        let cut = t.cut().pop().unwrap();
        assert_eq!((cut.len, cut.lines, cut.n), (10, 1, 0));
        assert!(t.cut().is_empty());
        let last = t.shutdown();
        assert_eq!(last.len(), 1);
        assert_eq!(
            (last[0].why, last[0].lines, last[0].n),
            (Why::Shutdown, 1, 1)
        );
    }

    #[test]
    fn reopening_the_same_file_continues_and_a_new_file_starts_the_next_fileno() {
        let id = FileId { dev: 1, ino: 1 };
        let seg = Arc::new(Segment {
            fileno: 0,
            path: "x".into(),
            id,
            skip: 0,
        });
        let mut t = Tracker::new(seg, 0, 0, ZERO, 0);
        t.observe(b"a\n");
        t.reopened(id, 2);
        t.observe(b"b\n");
        let cuts = t.cut();
        assert_eq!(cuts.len(), 2);
        assert_eq!((cuts[0].why, cuts[0].lines), (Why::Reopen, 1));
        assert_eq!(
            (cuts[1].why, cuts[1].lines, cuts[1].seg.fileno),
            (Why::Interval, 2, 0)
        );
        let h = cuts[1].hash;
        t.reopened(FileId { dev: 1, ino: 2 }, 5);
        t.observe(b"c\n");
        let cuts = t.cut();
        assert_eq!(
            (cuts[0].why, cuts[0].lines, cuts[0].seg.fileno),
            (Why::Rotate, 2, 0)
        );
        assert_eq!(cuts[1].seg.fileno, 1);
        assert_eq!(cuts[1].seg.skip, 5);
        assert_eq!((cuts[1].len, cuts[1].lines), (7, 1));
        // The running hash carries on across files.
        let mut chain = Chain::new(h);
        chain.line(b"c\n");
        assert_eq!(cuts[1].hash, chain.hash);
    }

    #[test]
    fn state_files_round_trip_are_0600_and_refuse_loose_permissions_or_junk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        let key = keygen(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(matches!(keygen(&path), Err(SealError::StateExists(_))));
        let state = State::load(&path).unwrap();
        assert_eq!(state.key.0.as_ref(), key.0.as_ref());
        assert_eq!(state.next_seq, 0);
        let mut next = State {
            next_seq: 3,
            seg: Some(Segment {
                fileno: 1,
                path: "dir with space/log".into(),
                id: FileId { dev: 9, ino: 10 },
                skip: 4,
            }),
            len: 40,
            lines: 2,
            sidecar: Some(FileId { dev: 9, ino: 11 }),
            last: Some(sample_record().to_line()),
            ..State::fresh(key.step())
        };
        next.hash = [3; 32];
        next.save(&path).unwrap();
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let back = State::load(&path).unwrap();
        assert_eq!(*back.render(), *next.render());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            State::load(&path),
            Err(SealError::StatePermissions { .. })
        ));
        std::fs::write(&path, "prime-audit state v1\nnext=x\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            State::load(&path),
            Err(SealError::StateCorrupt { .. })
        ));
    }

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
    fn a_crash_before_any_seal_leaves_an_unsealed_tail_that_a_restart_seals_late() {
        let mut rig = Rig::new();
        rig.write(2);
        rig.seal();
        rig.write(3);
        // kill -9: no final seal.
        let report = rig.verify().unwrap();
        assert_eq!(
            report.unsealed,
            vec![Span {
                file: rig.log.clone(),
                first: 3,
                last: 5
            }]
        );
        assert!(report.to_string().contains("UNSEALED (not verified): "));
        let resumed = rig.restart();
        assert_eq!((resumed.adopted_lines, resumed.new_file), (3, false));
        rig.write(1);
        rig.shutdown();
        let report = rig.verify().unwrap();
        assert!(report.unsealed.is_empty());
        assert_eq!(
            report.late,
            vec![Span {
                file: rig.log.clone(),
                first: 3,
                last: 5
            }]
        );
        assert_eq!(report.lines, 6);
    }

    /// The crash window between saving the evolved state and appending the
    /// record (record missing entirely, or torn by a power cut): a restart
    /// completes the sidecar from the state, and the run verifies.
    #[test]
    fn a_crash_between_saving_the_state_and_appending_the_seal_is_repaired() {
        for torn in [false, true] {
            let mut rig = Rig::new();
            rig.write(2);
            rig.seal();
            rig.write(2);
            rig.seal();
            let sidecar = seal_path(&rig.log);
            let full = std::fs::read(&sidecar).unwrap();
            let lines = rig.seal_lines();
            let keep = full.len() - lines[1].len() - 1 + if torn { 30 } else { 0 };
            std::fs::write(&sidecar, &full[..keep]).unwrap();
            let resumed = rig.restart();
            assert!(resumed.repaired_sidecar);
            assert_eq!(resumed.adopted_lines, 0);
            assert_eq!(std::fs::read(&sidecar).unwrap(), full);
            rig.write(1);
            rig.shutdown();
            let report = rig.verify().unwrap();
            assert_eq!((report.seals, report.lines), (3, 5));
            assert!(report.late.is_empty() && report.unsealed.is_empty());
        }
    }

    #[test]
    fn a_log_truncated_while_stopped_refuses_to_resume() {
        let mut rig = Rig::new();
        rig.write(3);
        rig.shutdown();
        let bytes = std::fs::read(&rig.log).unwrap();
        std::fs::write(&rig.log, &bytes[..10]).unwrap();
        let err = Sealer::open(&rig.state, &rig.log, at(9)).unwrap_err();
        assert!(
            matches!(err, SealError::LogTruncated { sealed, .. } if sealed == bytes.len() as u64)
        );
    }

    #[test]
    fn rotation_moves_the_sidecar_beside_the_renamed_log_and_the_chain_carries_on() {
        let mut rig = Rig::new();
        rig.write(2);
        rig.seal();
        rig.write(1);
        let rotated = rig.dir.path().join("audit.log.1");
        std::fs::rename(&rig.log, &rotated).unwrap();
        rig.file = append_open(&rig.log);
        rig.tracker.reopened(FileId::of(&rig.file).unwrap(), 0);
        rig.write(2);
        let sealed = rig.seal();
        assert_eq!(sealed[0].why, Why::Rotate);
        assert_eq!(
            sealed[0].moved_sidecar.as_deref(),
            Some(seal_path(&rotated).as_path())
        );
        assert_eq!((sealed[1].fileno, sealed[1].lines), (1, 2));
        rig.shutdown();
        let both = [rotated.clone(), rig.log.clone()];
        let report = verify(&rig.key0, &both).unwrap();
        assert_eq!((report.files, report.lines, report.seals), (2, 5, 4));
        // Out of order, or the current file alone, fails.
        let swapped = [rig.log.clone(), rotated.clone()];
        assert!(matches!(
            problem(verify(&rig.key0, &swapped)).1,
            Problem::NoStart { found: 2 }
        ));
        assert!(matches!(problem(rig.verify()).1, Problem::NoStart { .. }));
        // A line added to the finished file after its final seal.
        let mut f = append_open(&rotated);
        f.write_all(b"late line\n").unwrap();
        let (line, p) = problem(verify(&rig.key0, &both));
        assert_eq!((line, p), (4, Problem::AfterFinal { seq: 1 }));
    }

    #[test]
    fn a_restart_after_rotation_while_stopped_continues_with_the_next_file() {
        let mut rig = Rig::new();
        rig.write(2);
        rig.shutdown();
        let rotated = rig.dir.path().join("audit.log-20261123");
        std::fs::rename(&rig.log, &rotated).unwrap();
        rig.file = append_open(&rig.log);
        let resumed = rig.restart();
        assert!(resumed.new_file);
        assert_eq!(
            resumed.moved_sidecar.as_deref(),
            Some(seal_path(&rotated).as_path())
        );
        rig.write(3);
        rig.shutdown();
        let report = verify(&rig.key0, &[rotated, rig.log.clone()]).unwrap();
        assert_eq!((report.files, report.lines, report.seals), (2, 5, 2));
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
    fn sealing_an_existing_log_adopts_its_lines_as_late() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("old.log");
        std::fs::write(&log, "before sealing\nwas turned on\n").unwrap();
        let state = dir.path().join("state");
        let key0 = keygen(&state).unwrap();
        let (_s, _t, resumed) = Sealer::open(&state, &log, at(0)).unwrap();
        assert_eq!((resumed.adopted_lines, resumed.next_seq), (2, 1));
        let report = verify(&key0, std::slice::from_ref(&log)).unwrap();
        assert_eq!(
            report.late,
            vec![Span {
                file: log.clone(),
                first: 1,
                last: 2
            }]
        );
    }

    /// SIGHUP found a file with bytes already in it: they are not the
    /// server's, so the seals start after them and the verifier says so.
    #[test]
    fn bytes_found_in_a_file_opened_at_reopen_are_skipped_and_reported() {
        let mut rig = Rig::new();
        rig.write(2);
        let rotated = rig.dir.path().join("audit.log.old");
        std::fs::rename(&rig.log, &rotated).unwrap();
        std::fs::write(&rig.log, b"someone else's\nbytes").unwrap();
        rig.file = append_open(&rig.log);
        rig.tracker.reopened(FileId::of(&rig.file).unwrap(), 20);
        rig.write(2);
        rig.seal();
        rig.shutdown();
        let logs = [rotated, rig.log.clone()];
        let report = verify(&rig.key0, &logs).unwrap();
        assert_eq!(report.skipped, vec![(rig.log.clone(), 20)]);
        assert_eq!((report.lines, report.seals), (4, 3));
        assert!(report
            .to_string()
            .contains("starts with 20 bytes that were there before"));
        // Editing the skipped bytes is not caught (they are not sealed);
        // shortening them shifts the sealed lines and is.
        let bytes = std::fs::read(&rig.log).unwrap();
        std::fs::write(
            &rig.log,
            [&b"SOMEONE ELSE'S\nBYTES"[..], &bytes[20..]].concat(),
        )
        .unwrap();
        assert!(verify(&rig.key0, &logs).is_ok());
        std::fs::write(&rig.log, &bytes[1..]).unwrap();
        assert!(verify(&rig.key0, &logs).is_err());
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

    #[test]
    fn cuts_must_be_sealed_in_order() {
        let mut rig = Rig::new();
        rig.write(1);
        let first = rig.tracker.cut();
        rig.write(1);
        let second = rig.tracker.cut();
        let err = rig.sealer.seal(second, at(1)).unwrap_err();
        assert!(matches!(
            err,
            SealError::OutOfOrder {
                expected: 0,
                got: 1
            }
        ));
        rig.sealer.seal(first, at(1)).unwrap();
    }
}
