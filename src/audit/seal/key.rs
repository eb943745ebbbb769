//! The sealing key `k_i` and its one-way step; SHA-256 helpers.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use std::fmt;
use thiserror::Error;
use zeroize::Zeroizing;

/// Bytes in a key, a hash and a MAC (SHA-256 sized).
pub(super) const KEY_LEN: usize = 32;

/// Domain separation for the key step, so `k_{i+1}` is never a hash that
/// means anything else.
const KEY_STEP_TAG: &[u8] = b"prime-audit key step v1\0";

/// A 32-byte SHA-256 value: the running hash or a seal line's hash.
pub type Hash32 = [u8; KEY_LEN];

/// The all-zero hash: `h_0`, and `prev` of seal 0.
pub(super) const ZERO: Hash32 = [0; KEY_LEN];

type HmacSha256 = Hmac<Sha256>;

/// A sealing key `k_i`; zeroized when dropped, never printed by `Debug`.
pub struct Key(pub(super) Zeroizing<[u8; KEY_LEN]>);

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
    pub(super) fn step(&self) -> Key {
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
    pub(super) fn mac(&self, message: &[u8]) -> Hash32 {
        let mut mac = self.hmac();
        mac.update(message);
        let mut out = [0u8; KEY_LEN];
        out.copy_from_slice(&mac.finalize().into_bytes());
        out
    }

    /// Whether `tag` is this key's MAC of `message`, compared in constant time.
    pub(super) fn verifies(&self, message: &[u8], tag: &[u8]) -> bool {
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
pub(super) fn sha256(bytes: &[u8]) -> Hash32 {
    Sha256::digest(bytes).into()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
