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
//! # The modules
//!
//! One concern each; an arrow is "imports", and there is no circle:
//!
//! | module | what it holds | imports |
//! | --- | --- | --- |
//! | `key` | [`Key`], its one-way step, HMAC and SHA-256 helpers | - |
//! | `fields` | the one `name=value` field reader (records and state) | key |
//! | `record` | [`Record`]: a seal line, its canonical text, its MAC | key, fields |
//! | `files` | [`FileId`], [`seal_path`], durable renames, reading a sidecar | - |
//! | `error` | [`SealError`] | - |
//! | `chain` | the running hash, [`Tracker`] and its [`Cut`]s | key, record, files |
//! | `state` | the state file, [`keygen`] | key, fields, files, error, chain |
//! | `sealer` | [`Sealer`]: cuts into records, the ratchet on disk, sidecars | all of the above |
//! | `verify` | [`verify`] and its [`Report`] / [`Failure`] | key, record, files, chain |
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
//! | `fp` | fingerprints of the lines since the previous seal, or `-` beyond 65,536 lines | (locating the first bad line) |
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

mod chain;
mod error;
mod fields;
mod files;
mod key;
mod record;
mod sealer;
mod state;
#[cfg(test)]
mod testing;
mod verify;

pub use chain::{fingerprint, next_hash, Cut, Tracker};
pub use error::SealError;
pub use files::{seal_path, FileId};
pub use key::{Hash32, Key, KeyError};
pub use record::{MalformedRecord, Record, Why};
pub use sealer::{Resumed, Sealed, Sealer};
pub use state::keygen;
pub use verify::{verify, Failure, Problem, Report, Span};
