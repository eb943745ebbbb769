//! Forward-secure seals over the audit log, bound to time, and their
//! verification. The reference (record format, key schedule, verify rules,
//! what is and is not proven) is docs/audit-integrity.md#sealing.
//!
//! # The pieces
//!
//! - The key schedule ([`Ratchet`]): from the seed `K_0` (in the
//!   verification key, with its [`Schedule`]), a two-level ratchet gives
//!   one key per epoch of `--seal-interval` (whether or not lines are
//!   written), and inside each epoch one key per seal. Every key is one-way
//!   from the ones before, computed and erased in place.
//! - The running hash is a chain over lines: `h_0` is 32 zero bytes and
//!   `h_n = SHA-256(h_{n-1} || line_n)`, `line_n` with its `\n`. It covers every
//!   byte, is 32 bytes of state, and carries on from one file to the next.
//!   Each line also gets a CRC-32 *fingerprint*, kept in a fingerprint line
//!   before its seal; fingerprints only *locate* a tampered line.
//! - [`Tracker`] lives inside the audit writer's mutex: [`Tracker::observe`]
//!   hashes the bytes just appended (no I/O), and [`Tracker::cut`] /
//!   [`Tracker::beat`] / [`Tracker::shutdown`] / [`Tracker::reopened`] take
//!   cheap snapshots ([`Cut`]s).
//! - [`Sealer`] lives in one sealing thread: [`Sealer::seal`] turns cuts into
//!   seal records made with the key of the current epoch, persists the keys
//!   that come after and appends the records, all outside the writer's
//!   mutex; [`Sealer::tick`] steps the keys every epoch. [`Sealer::open`]
//!   locks and resumes the state file and makes the run's start seal.
//! - [`Shipper`] sends each record to a syslog collector, off the host.
//! - [`verify`] checks files against their seals and says 0 only when every
//!   line is vouched for; `prime-audit` (`src/bin/prime-audit.rs`) is its
//!   command line.
//!
//! # The modules
//!
//! One concern each; "imports" lists the modules of this folder each uses,
//! and there is no circle:
//!
//! | module | what it holds | imports |
//! | --- | --- | --- |
//! | `key` | [`Key`], [`Schedule`], [`VerifyKey`], SHA-256 helpers | - |
//! | `ratchet` | [`Ratchet`]: the key schedule, in-place SHA-256 and HMAC | key |
//! | `fields` | the one `name=value` field reader (records and state) | key |
//! | `record` | [`Record`]: a seal line, its canonical text, its MAC; fingerprint lines | key, ratchet, fields |
//! | `files` | [`FileId`], [`seal_path`], durable renames, bounded reads, the state lock | record |
//! | `error` | [`SealError`] | - |
//! | `chain` | the running hash, [`Tracker`] and its [`Cut`]s | key, record, files |
//! | `state` | the state file, [`keygen`] | key, ratchet, fields, files, error, chain |
//! | `sidecar` | the seal file: resume after a crash, append, move at rotation | files, error, key, record, chain |
//! | `sealer` | [`Sealer`]: cuts into records, keys on disk | all of the above |
//! | `ship` | [`Shipper`]: syslog (RFC 5424 over TCP, RFC 6587 framing) | - |
//! | `verify` | [`verify`], its [`Options`], [`Report`] / [`Failure`] | key, ratchet, record, files, chain |
//!
//! # Crash safety
//!
//! Each seal is: write its fingerprint line; make the record and MAC it;
//! save the state (the keys after this seal, the position, and the record
//! itself) by writing a temporary file (0600), fsync, rename over the old
//! one, fsync the directory, then overwrite the old state's bytes; only then
//! append the record to the sidecar and fsync it. So the keys on disk can
//! never make a seal already written, and a crash between saving the state
//! and appending loses nothing: [`Sealer::open`] finds the record in the
//! state and appends it (cutting a torn partial line first).
//!
//! # How the audit writer drives it
//!
//! ```text
//! let (mut sealer, tracker, resumed) = Sealer::open(&state, &log, SystemTime::now(), heartbeat)?;
//! // under the writer's mutex, after each successful append of whole lines:
//! tracker.observe(bytes);
//! // sealing thread, every --seal-interval (cut under the mutex, seal outside):
//! sealer.tick(SystemTime::now());
//! let cuts = writer.lock().tracker.cut();          // or .beat() when idle for a heartbeat
//! sealer.seal(cuts, SystemTime::now())?;           // even with no cut: retries a failure
//! // SIGHUP, under the mutex after opening the new file:
//! tracker.reopened(FileId::of(&new_file)?, new_file.metadata()?.len());
//! // shutdown: let cuts = writer.lock().tracker.shutdown(); sealer.seal(cuts, now)?;
//! ```

mod chain;
mod error;
mod fields;
mod files;
mod key;
mod ratchet;
mod record;
mod sealer;
mod ship;
mod sidecar;
mod state;
#[cfg(test)]
mod testing;
mod verify;

pub use chain::{fingerprint, next_hash, Cut, Tracker};
pub use error::SealError;
pub use files::{seal_path, FileId};
pub use key::{micros, Hash32, Key, KeyError, Schedule, VerifyKey, EPOCH_BOUNDS};
pub use ratchet::Ratchet;
pub use record::{MalformedRecord, Record, Why};
pub use sealer::{Resumed, Sealed, Sealer};
pub use ship::{ShipMetrics, Shipper};
pub use state::{keygen, schedule_of};
pub use verify::{
    verify, End, Failure, Options, Problem, Report, ShippedSummary, Span, LATE_SLACK, MAX_LOG_LINE,
};
