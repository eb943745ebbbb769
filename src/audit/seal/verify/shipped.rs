//! `--seals-from FILE`: the collector's copy of the shipped seals (a file
//! of received syslog messages, as rsyslog writes it), read alongside the
//! local chain. Every line holding `seal v2 ` is a candidate; one that
//! parses and whose MAC verifies with the key of its epoch is a seal of
//! this chain (anything else, such as another server's seals, is ignored).
//! The copy must move forward (a seal number seen again with other
//! contents is a rollback), every seal in it must equal the local seal of
//! that number, and the local chain must reach its last one.

use super::super::key::{sha256, Hash32, Key, Schedule, VerifyKey};
use super::super::ratchet::Ratchet;
use super::super::record::Record;
use super::input;
use super::report::{Problem, ShippedSummary};
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

/// Longest collector line read whole; longer lines are skipped.
const MAX_LINE: usize = 16 * 1024;

/// A shipped seal: its number, the hash of its text, its time, and its
/// line in the collector's file.
#[derive(Debug, Clone)]
struct Copy {
    seq: u64,
    hash: Hash32,
    time: String,
}

/// The collector's copy, read in step with the local chain.
pub(super) struct Shipped {
    /// The file.
    reader: BufReader<File>,
    /// Lines read.
    line_no: u64,
    /// `K_0`, to check a seal older than the ratchet's position.
    seed: Key,
    /// The key epochs.
    schedule: Schedule,
    /// Keys for the seals in order.
    ratchet: Ratchet,
    /// The last seal of this chain read from the copy.
    last: Option<(Copy, Hash32)>,
    /// A seal read ahead of the local chain.
    ahead: Option<Copy>,
    /// What was found.
    summary: ShippedSummary,
}

impl Shipped {
    /// Opens the collector's file (a regular file only).
    pub(super) fn open(path: &Path, key: &VerifyKey) -> Result<Shipped, Problem> {
        let file = input::open(path, false)?.ok_or_else(|| Problem::Unreadable {
            path: path.to_path_buf(),
            why: "not found".into(),
        })?;
        Ok(Shipped {
            reader: BufReader::with_capacity(64 * 1024, file),
            line_no: 0,
            seed: key.seed.duplicate(),
            schedule: key.schedule,
            ratchet: Ratchet::from_seed(&key.seed),
            last: None,
            ahead: None,
            summary: ShippedSummary::default(),
        })
    }

    /// The next line of the file (at most [`MAX_LINE`] bytes kept), or None.
    fn line(&mut self, buf: &mut Vec<u8>) -> Result<bool, Problem> {
        buf.clear();
        let mut kept_all = true;
        loop {
            let available = self.reader.fill_buf().map_err(|e| Problem::Unreadable {
                path: "--seals-from".into(),
                why: e.to_string(),
            })?;
            if available.is_empty() {
                break;
            }
            let (take, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            let room = MAX_LINE.saturating_sub(buf.len());
            buf.extend_from_slice(&available[..take.min(room)]);
            kept_all &= take <= room;
            self.reader.consume(take);
            if done {
                break;
            }
        }
        if buf.is_empty() {
            return Ok(false);
        }
        self.line_no += 1;
        if !kept_all {
            buf.clear();
        }
        Ok(true)
    }

    /// Whether `record` verifies with the key of its epoch and place.
    fn authentic(&mut self, record: &Record) -> bool {
        if self.schedule.epoch_of(record.time_us()) != Some(record.epoch) {
            return false;
        }
        let body = record.body();
        if (record.epoch, record.sub) >= (self.ratchet.epoch(), self.ratchet.sub()) {
            let mut trial = self.ratchet.duplicate();
            if trial.check(record.epoch, record.sub, body.as_bytes(), &record.mac) {
                self.ratchet = trial;
                return true;
            }
            return false;
        }
        // An older position (a rollback resumed): derive it afresh.
        let mut fresh = Ratchet::from_seed(&self.seed);
        fresh.check(record.epoch, record.sub, body.as_bytes(), &record.mac)
    }

    /// The next seal of this chain in the copy.
    fn next(&mut self) -> Result<Option<Copy>, Problem> {
        let mut buf = Vec::new();
        while self.line(&mut buf)? {
            let text = String::from_utf8_lossy(&buf);
            let Some(start) = text.find("seal v2 ") else {
                continue;
            };
            let text = text[start..].trim_end_matches(['\n', '\r']);
            let Ok(record) = Record::parse(text) else {
                self.summary.ignored += 1;
                continue;
            };
            if !self.authentic(&record) {
                self.summary.ignored += 1;
                continue;
            }
            let hash = sha256(text.as_bytes());
            let copy = Copy {
                seq: record.seq,
                hash,
                time: record.time.clone(),
            };
            if let Some((last, _)) = &self.last {
                if copy.seq == last.seq && copy.hash == last.hash {
                    continue; // sent again after a reconnect
                }
                let follows = copy.seq > last.seq + 1
                    || (copy.seq == last.seq + 1 && record.prev == last.hash);
                if !follows {
                    return Err(Problem::ShippedFork {
                        seq: copy.seq,
                        at: self.line_no,
                    });
                }
            }
            self.summary.seals += 1;
            self.last = Some((copy.clone(), hash));
            return Ok(Some(copy));
        }
        Ok(None)
    }

    /// Checks the local seal `seq`, whose line hashes to `hash`, against
    /// the copy.
    pub(super) fn check(&mut self, seq: u64, hash: &Hash32) -> Result<(), Problem> {
        loop {
            if self.ahead.is_none() {
                self.ahead = self.next()?;
            }
            match &self.ahead {
                Some(copy) if copy.seq < seq => self.ahead = None,
                Some(copy) if copy.seq == seq => {
                    if copy.hash != *hash {
                        return Err(Problem::ShippedDiffers { seq });
                    }
                    self.summary.matched += 1;
                    self.ahead = None;
                    return Ok(());
                }
                _ => return Ok(()),
            }
        }
    }

    /// After the local chain (ending at `local_last`): the rest of the copy
    /// must not go further, nor fork.
    pub(super) fn finish(mut self, local_last: Option<u64>) -> Result<ShippedSummary, Problem> {
        let mut furthest: Option<Copy> = None;
        if let Some(copy) = self.ahead.take() {
            furthest = Some(copy);
        }
        while let Some(copy) = self.next()? {
            furthest = Some(copy);
        }
        if let Some(copy) = furthest.filter(|c| local_last.is_none_or(|l| c.seq > l)) {
            return Err(Problem::ShippedLonger {
                shipped: copy.seq,
                time: copy.time,
                local: local_last.map_or_else(|| "none".to_owned(), |l| l.to_string()),
            });
        }
        Ok(self.summary)
    }
}
