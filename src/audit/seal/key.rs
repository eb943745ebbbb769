//! Keys: the secret seed `K_0` with the schedule that binds its keys to
//! time (together, the verification key), and SHA-256 helpers.

use sha2::{Digest, Sha256};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;
use zeroize::Zeroize;

/// Bytes in a key, a hash and a MAC (SHA-256 sized).
pub(super) const KEY_LEN: usize = 32;

/// A 32-byte SHA-256 value: the running hash or a seal line's hash.
pub type Hash32 = [u8; KEY_LEN];

/// The all-zero hash: `h_0`, and `prev` of seal 0.
pub(super) const ZERO: Hash32 = [0; KEY_LEN];

/// Shortest and longest key epoch (`--seal-interval` at keygen).
pub const EPOCH_BOUNDS: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(3600));

/// A 32-byte secret (the seed `K_0`, or a key an attacker stole from a
/// state file). It lives on the heap, so moving a `Key` copies a pointer,
/// never the bytes; they are zeroed when it is dropped, and `Debug` never
/// prints them.
pub struct Key(pub(super) Box<[u8; KEY_LEN]>);

/// Why a key given as text was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// Not exactly 64 hexadecimal digits.
    #[error("a key is 64 hexadecimal digits")]
    BadHex,
    /// Not `KEY-START-EPOCH` as `prime-audit keygen` prints it.
    #[error("a verification key is 64 hex digits, the start time and the epoch in milliseconds, joined by `-` (as prime-audit keygen prints it)")]
    BadToken,
}

impl Key {
    /// A fresh random key from the operating system.
    ///
    /// # Errors
    ///
    /// The OS random source failed.
    pub fn generate() -> Result<Key, getrandom::Error> {
        let mut key = Key(Box::new([0u8; KEY_LEN]));
        getrandom::fill(key.0.as_mut())?;
        Ok(key)
    }

    /// Parses 64 hex digits (surrounding whitespace ignored), decoding
    /// straight into the key's own heap bytes.
    ///
    /// # Errors
    ///
    /// [`KeyError::BadHex`] for anything else.
    pub fn from_hex(text: &str) -> Result<Key, KeyError> {
        let mut key = Key(Box::new([0u8; KEY_LEN]));
        hex::decode_to_slice(text.trim(), key.0.as_mut()).map_err(|_| KeyError::BadHex)?;
        Ok(key)
    }

    /// Appends the key as 64 lowercase hex digits to `out`, which must have
    /// room for them (so it never reallocates and leaves a copy behind).
    pub(super) fn push_hex(bytes: &[u8; KEY_LEN], out: &mut String) {
        let mut digits = [0u8; 2 * KEY_LEN];
        // 64 bytes into a 64-byte buffer cannot fail.
        let _ = hex::encode_to_slice(bytes, &mut digits);
        debug_assert!(out.capacity() - out.len() >= digits.len());
        out.push_str(std::str::from_utf8(&digits).unwrap_or_default());
        digits.zeroize();
    }

    /// A copy on the heap (the copy is erased when dropped, as this one is).
    pub(super) fn duplicate(&self) -> Key {
        let mut copy = Key(Box::new([0u8; KEY_LEN]));
        copy.0.copy_from_slice(self.0.as_ref());
        copy
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Key(..)")
    }
}

/// When the key epochs start and how long each lasts: epoch `e` is the time
/// `[start + e * epoch, start + (e + 1) * epoch)`. A seal made in epoch `e`
/// is made with that epoch's keys and carries a time inside it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Start of epoch 0, in milliseconds since the Unix epoch.
    pub start_ms: u64,
    /// Length of an epoch in milliseconds.
    pub epoch_ms: u64,
}

impl Schedule {
    /// A schedule starting at `start` (truncated to the millisecond) with
    /// epochs of `epoch` (truncated to the millisecond).
    pub fn new(start: SystemTime, epoch: Duration) -> Schedule {
        Schedule {
            start_ms: micros(start) / 1000,
            epoch_ms: u64::try_from(epoch.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    }

    /// The epoch holding the time `t_us` (microseconds since the Unix
    /// epoch), or `None` before epoch 0.
    pub fn epoch_of(&self, t_us: u64) -> Option<u64> {
        let start = self.start_ms.saturating_mul(1000);
        (t_us >= start).then(|| (t_us - start) / self.epoch_ms.saturating_mul(1000))
    }

    /// When the key in use at `now` must be erased: the start of the next
    /// epoch (of epoch 0, before it).
    pub fn next_epoch_start(&self, now: SystemTime) -> SystemTime {
        let next = self
            .epoch_of(micros(now))
            .map_or(0, |e| e.saturating_add(1));
        let at_ms = next
            .saturating_mul(self.epoch_ms)
            .saturating_add(self.start_ms);
        UNIX_EPOCH + Duration::from_millis(at_ms)
    }

    /// The epoch's length.
    pub fn epoch(&self) -> Duration {
        Duration::from_millis(self.epoch_ms)
    }

    /// The start of epoch 0, in microseconds.
    pub fn start_us(&self) -> u64 {
        self.start_ms.saturating_mul(1000)
    }
}

/// Microseconds since the Unix epoch (0 before it).
pub fn micros(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// The verification key: the seed `K_0` and its [`Schedule`]. Printed by
/// `prime-audit keygen` as one token, `<64 hex>-<start ms>-<epoch ms>`.
#[derive(Debug)]
pub struct VerifyKey {
    /// `K_0`: every key of the chain derives from it.
    pub seed: Key,
    /// When its epochs start and how long they are.
    pub schedule: Schedule,
}

impl VerifyKey {
    /// Parses the token `prime-audit keygen` printed (whitespace around it
    /// ignored).
    ///
    /// # Errors
    ///
    /// [`KeyError::BadToken`] for anything else.
    pub fn parse(token: &str) -> Result<VerifyKey, KeyError> {
        let mut parts = token.trim().split('-');
        let (Some(seed), Some(start), Some(epoch), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(KeyError::BadToken);
        };
        let seed = Key::from_hex(seed).map_err(|_| KeyError::BadToken)?;
        let number = |t: &str| {
            (!t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .then(|| t.parse::<u64>().ok())
                .flatten()
                .ok_or(KeyError::BadToken)
        };
        let schedule = Schedule {
            start_ms: number(start)?,
            epoch_ms: number(epoch)?,
        };
        let (low, high) = EPOCH_BOUNDS;
        if Duration::from_millis(schedule.epoch_ms) < low
            || Duration::from_millis(schedule.epoch_ms) > high
        {
            return Err(KeyError::BadToken);
        }
        Ok(VerifyKey { seed, schedule })
    }

    /// The token, erased when dropped.
    pub fn token(&self) -> zeroize::Zeroizing<String> {
        let mut s = zeroize::Zeroizing::new(String::with_capacity(128));
        Key::push_hex(&self.seed.0, &mut s);
        s.push_str(&format!(
            "-{}-{}",
            self.schedule.start_ms, self.schedule.epoch_ms
        ));
        s
    }
}

/// SHA-256 of `bytes`, as an array (for public data only: the running hash,
/// seal lines).
pub(super) fn sha256(bytes: &[u8]) -> Hash32 {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_as_hex_and_tokens_and_never_print() {
        let k0 = Key::generate().unwrap();
        let mut hex_text = String::with_capacity(64);
        Key::push_hex(&k0.0, &mut hex_text);
        let again = Key::from_hex(&format!(" {hex_text}\n")).unwrap();
        assert_eq!(again.0, k0.0);
        assert_eq!(Key::from_hex("abc").unwrap_err(), KeyError::BadHex);
        assert_eq!(
            Key::from_hex(&"g".repeat(64)).unwrap_err(),
            KeyError::BadHex
        );
        assert_eq!(format!("{k0:?}"), "Key(..)");
        let vk = VerifyKey {
            seed: k0.duplicate(),
            schedule: Schedule {
                start_ms: 1_790_000_000_123,
                epoch_ms: 1000,
            },
        };
        let token = vk.token();
        assert_eq!(token.as_str(), format!("{hex_text}-1790000000123-1000"));
        let back = VerifyKey::parse(&token).unwrap();
        assert_eq!((&back.seed.0, back.schedule), (&k0.0, vk.schedule));
        for bad in [
            hex_text.clone(),
            format!("{hex_text}-1-"),
            format!("{hex_text}-1-5"),
            format!("{hex_text}-x-1000"),
            format!("{hex_text}-1-1000-2"),
            format!("{hex_text}-+1-1000"),
        ] {
            assert_eq!(VerifyKey::parse(&bad).unwrap_err(), KeyError::BadToken);
        }
    }

    #[test]
    fn epochs_are_half_open_intervals_from_the_start() {
        let s = Schedule {
            start_ms: 1000,
            epoch_ms: 250,
        };
        assert_eq!(s.epoch_of(999_999), None);
        assert_eq!(s.epoch_of(1_000_000), Some(0));
        assert_eq!(s.epoch_of(1_249_999), Some(0));
        assert_eq!(s.epoch_of(1_250_000), Some(1));
        let at = |us: u64| UNIX_EPOCH + Duration::from_micros(us);
        assert_eq!(s.next_epoch_start(at(10)), at(1_000_000));
        assert_eq!(s.next_epoch_start(at(1_000_000)), at(1_250_000));
        assert_eq!(s.next_epoch_start(at(1_249_999)), at(1_250_000));
        assert_eq!(s.next_epoch_start(at(1_250_000)), at(1_500_000));
        assert_eq!(
            Schedule::new(UNIX_EPOCH + Duration::from_micros(1_234_567), s.epoch()),
            Schedule {
                start_ms: 1234,
                epoch_ms: 250
            }
        );
    }
}
