//! The key schedule: a two-level ratchet bound to time, with a seal-by-seal
//! ratchet inside each epoch, computed in place so that no earlier key
//! survives in memory.
//!
//! With `H(tag, x)` = SHA-256 of `tag || x` (one 64-byte block), `G` =
//! [`GROUP`] epochs per group, and `K_0` the seed (the verification key):
//!
//! ```text
//! K_{g+1}   = H("prime-audit outer v2", K_g)    outer: one step per group
//! k_{gG}    = H("prime-audit inner v2", K_g)    first epoch key of group g
//! k_{e+1}   = H("prime-audit step v2",  k_e)    next epoch in the same group
//! m_{e,0}   = H("prime-audit seal v2",  k_e)    first seal key of epoch e
//! m_{e,s+1} = H("prime-audit next v2",  m_{e,s})
//! ```
//!
//! The `s`-th seal made in epoch `e` is HMAC-SHA-256 with `m_{e,s}`. A
//! [`Ratchet`] at position `(e, s)` holds exactly three keys: `m_{e,s}`,
//! `k_{e+1}` and `K_{g+1}` where `g` is the group of epoch `e + 1`. Each
//! is one-way from what came before, so whoever reads them can make seals
//! at `(e, s)` and later, and none earlier. Moving forward `n` epochs costs
//! at most `n / G + G` hashes: a month of one-second epochs is under 5,000.
//!
//! Every hash runs on buffers inside the ratchet's own heap block (the
//! SHA-256 compression function over our block, no hasher object that a
//! `finalize` would copy), each key is overwritten where it lies, the
//! scratch is zeroed after each use, and the stack below is scrubbed.

use super::key::{Hash32, Key, KEY_LEN};
use sha2::block_api::compress256;
use zeroize::Zeroize;

/// Epochs per group of the outer ratchet.
pub const GROUP: u64 = 4096;

const OUTER: &[u8] = b"prime-audit outer v2";
const INNER: &[u8] = b"prime-audit inner v2";
const STEP: &[u8] = b"prime-audit step v2";
const SEAL: &[u8] = b"prime-audit seal v2";
const NEXT: &[u8] = b"prime-audit next v2";

/// SHA-256's initial state.
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// Room for one SHA-256 computation; zeroed after each use.
struct Scratch {
    /// The block being compressed.
    block: [u8; 64],
    /// The chaining state.
    state: [u32; 8],
    /// HMAC's inner digest.
    inner: [u8; KEY_LEN],
}

impl Scratch {
    fn new() -> Scratch {
        Scratch {
            block: [0; 64],
            state: [0; 8],
            inner: [0; KEY_LEN],
        }
    }

    fn compress(&mut self) {
        compress256(&mut self.state, std::slice::from_ref(&self.block));
    }

    /// `state` = SHA-256 of `tag || input` (at most 55 bytes: one block).
    fn absorb(&mut self, tag: &[u8], input: &[u8; KEY_LEN]) {
        let n = tag.len() + KEY_LEN;
        debug_assert!(n <= 55);
        self.block.zeroize();
        self.block[..tag.len()].copy_from_slice(tag);
        self.block[tag.len()..n].copy_from_slice(input);
        self.block[n] = 0x80;
        let bits = (n as u64) * 8;
        self.block[56..].copy_from_slice(&bits.to_be_bytes());
        self.state = IV;
        self.compress();
        self.block.zeroize();
    }

    /// Writes the digest in `state` to `out`, then zeroes `state`.
    fn emit(&mut self, out: &mut [u8; KEY_LEN]) {
        for (chunk, word) in out.chunks_exact_mut(4).zip(self.state.iter()) {
            chunk.copy_from_slice(&word.to_be_bytes());
        }
        self.state.zeroize();
    }

    /// Starts a hash with one block: `key` padded to 64 bytes, XORed with
    /// `pad` (HMAC's inner or outer key block).
    fn key_block(&mut self, key: &[u8; KEY_LEN], pad: u8) {
        for (i, b) in self.block.iter_mut().enumerate() {
            *b = key.get(i).copied().unwrap_or(0) ^ pad;
        }
        self.state = IV;
        self.compress();
        self.block.zeroize();
    }

    /// Feeds `tail` (under a block) and the padding for `total` bytes.
    fn finish(&mut self, tail: &[u8], total: u64) {
        self.block.zeroize();
        self.block[..tail.len()].copy_from_slice(tail);
        self.block[tail.len()] = 0x80;
        if tail.len() >= 56 {
            self.compress();
            self.block.zeroize();
        }
        self.block[56..].copy_from_slice(&(total * 8).to_be_bytes());
        self.compress();
        self.block.zeroize();
    }

    /// HMAC-SHA-256 of `msg` with `key`.
    fn hmac(&mut self, key: &[u8; KEY_LEN], msg: &[u8]) -> Hash32 {
        self.key_block(key, 0x36);
        let mut blocks = msg.chunks_exact(64);
        for block in &mut blocks {
            let block: &[u8; 64] = block.try_into().unwrap_or(&[0; 64]);
            compress256(&mut self.state, std::slice::from_ref(block));
        }
        self.finish(blocks.remainder(), 64 + msg.len() as u64);
        let mut inner = [0u8; KEY_LEN];
        self.emit(&mut inner);
        self.inner = inner;
        self.key_block(key, 0x5c);
        let inner = self.inner;
        self.finish(&inner, 64 + KEY_LEN as u64);
        let mut tag = [0u8; KEY_LEN];
        self.emit(&mut tag);
        self.inner.zeroize();
        tag
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        self.block.zeroize();
        self.state.zeroize();
        self.inner.zeroize();
    }
}

/// The three keys of a position, and scratch, in one heap block.
struct Keys {
    /// `m_{e,s}`: the next seal's MAC key.
    seal: [u8; KEY_LEN],
    /// `k_{e+1}`: the next epoch's key.
    next: [u8; KEY_LEN],
    /// `K_{g+1}`, `g` the group of epoch `e + 1`.
    outer: [u8; KEY_LEN],
    /// Where every hash is computed.
    scratch: Scratch,
}

impl Drop for Keys {
    fn drop(&mut self) {
        self.seal.zeroize();
        self.next.zeroize();
        self.outer.zeroize();
    }
}

/// A position `(e, s)` of the key schedule and its keys. See the module
/// documentation.
pub struct Ratchet {
    /// The epoch `e`.
    epoch: u64,
    /// Seals already made in epoch `e` with earlier keys: the next is `s`.
    sub: u64,
    /// The keys (moved by pointer only, erased in place).
    keys: Box<Keys>,
    /// Hashes computed to move keys (for tests and measurements).
    hashes: u64,
}

impl std::fmt::Debug for Ratchet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ratchet")
            .field("epoch", &self.epoch)
            .field("sub", &self.sub)
            .finish_non_exhaustive()
    }
}

impl Ratchet {
    fn empty(epoch: u64, sub: u64) -> Ratchet {
        Ratchet {
            epoch,
            sub,
            keys: Box::new(Keys {
                seal: [0; KEY_LEN],
                next: [0; KEY_LEN],
                outer: [0; KEY_LEN],
                scratch: Scratch::new(),
            }),
            hashes: 0,
        }
    }

    /// Position `(0, 0)` from the seed `K_0`.
    pub fn from_seed(seed: &Key) -> Ratchet {
        let mut r = Ratchet::empty(0, 0);
        let k = &mut *r.keys;
        k.scratch.absorb(OUTER, &seed.0);
        k.scratch.emit(&mut k.outer);
        k.scratch.absorb(INNER, &seed.0);
        k.scratch.emit(&mut k.next);
        r.hashes = 2;
        r.enter_epoch(0);
        scrub_stack();
        r
    }

    /// A position read back from a state file: the keys are written
    /// straight into the ratchet by `fill` (seal, next, outer).
    pub(super) fn restore(
        epoch: u64,
        sub: u64,
        fill: impl FnOnce(&mut [u8; KEY_LEN], &mut [u8; KEY_LEN], &mut [u8; KEY_LEN]) -> bool,
    ) -> Option<Ratchet> {
        let mut r = Ratchet::empty(epoch, sub);
        let k = &mut *r.keys;
        fill(&mut k.seal, &mut k.next, &mut k.outer).then_some(r)
    }

    /// The epoch `e`.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// The seal index `s` within the epoch.
    pub fn sub(&self) -> u64 {
        self.sub
    }

    /// Hashes computed to move this ratchet's keys so far.
    pub fn hashes(&self) -> u64 {
        self.hashes
    }

    /// The three keys this position holds: (`m_{e,s}`, `k_{e+1}`,
    /// `K_{g+1}`), for the state file (and for tests that look for them).
    pub fn keys(&self) -> (&[u8; KEY_LEN], &[u8; KEY_LEN], &[u8; KEY_LEN]) {
        (&self.keys.seal, &self.keys.next, &self.keys.outer)
    }

    /// With `next` holding `k_e`: `seal` = `m_{e,0}`, `next` = `k_{e+1}`.
    fn enter_epoch(&mut self, e: u64) {
        let k = &mut *self.keys;
        k.scratch.absorb(SEAL, &k.next);
        k.scratch.emit(&mut k.seal);
        if (e + 1).is_multiple_of(GROUP) {
            k.scratch.absorb(INNER, &k.outer);
            k.scratch.emit(&mut k.next);
            k.scratch.absorb(OUTER, &k.outer);
            k.scratch.emit(&mut k.outer);
            self.hashes += 3;
        } else {
            k.scratch.absorb(STEP, &k.next);
            k.scratch.emit(&mut k.next);
            self.hashes += 2;
        }
        self.epoch = e;
        self.sub = 0;
    }

    /// Moves to epoch `e` (nothing if it is not later), erasing every key
    /// of the epochs stepped over.
    pub fn advance_to(&mut self, e: u64) {
        if e <= self.epoch {
            return;
        }
        let mut cur = self.epoch + 1; // `next` holds k_cur
        let target_group = e / GROUP;
        let k = &mut *self.keys;
        if target_group > cur / GROUP {
            // `outer` holds K_{group(cur)+1}; walk it to K_{target_group}.
            for _ in cur / GROUP + 1..target_group {
                k.scratch.absorb(OUTER, &k.outer);
                k.scratch.emit(&mut k.outer);
                self.hashes += 1;
            }
            k.scratch.absorb(INNER, &k.outer);
            k.scratch.emit(&mut k.next);
            k.scratch.absorb(OUTER, &k.outer);
            k.scratch.emit(&mut k.outer);
            self.hashes += 2;
            cur = target_group * GROUP;
        }
        while cur < e {
            k.scratch.absorb(STEP, &k.next);
            k.scratch.emit(&mut k.next);
            self.hashes += 1;
            cur += 1;
        }
        self.enter_epoch(e);
        scrub_stack();
    }

    /// Replaces `m_{e,s}` by `m_{e,s+1}`.
    fn next_seal_key(&mut self) {
        let k = &mut *self.keys;
        k.scratch.absorb(NEXT, &k.seal);
        k.scratch.emit(&mut k.seal);
        self.hashes += 1;
        self.sub += 1;
    }

    /// The MAC of `msg` with `m_{e,s}`; the ratchet moves to `(e, s+1)`.
    pub fn seal(&mut self, msg: &[u8]) -> Hash32 {
        let k = &mut *self.keys;
        let tag = k.scratch.hmac(&k.seal, msg);
        self.next_seal_key();
        scrub_stack();
        tag
    }

    /// The MAC a seal made at position `(epoch, sub)` has for `msg`; the
    /// ratchet moves past it (to `(epoch, sub + 1)`). `None` for a position
    /// before the ratchet's own: its key is gone.
    pub fn seal_at(&mut self, epoch: u64, sub: u64, msg: &[u8]) -> Option<Hash32> {
        if (epoch, sub) < (self.epoch, self.sub) {
            return None;
        }
        self.advance_to(epoch);
        while self.sub < sub {
            self.next_seal_key();
        }
        Some(self.seal(msg))
    }

    /// Whether `tag` is the MAC of `msg` made at position `(epoch, sub)`
    /// (see [`Ratchet::seal_at`]).
    pub fn check(&mut self, epoch: u64, sub: u64, msg: &[u8], tag: &[u8]) -> bool {
        self.seal_at(epoch, sub, msg)
            .is_some_and(|mac| ct_eq(&mac, tag))
    }

    /// The keys in the text of a state file, as an attacker who copied it
    /// holds them (for tests that play one).
    pub fn from_state_text(text: &str) -> Option<Ratchet> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        };
        let (epoch, sub) = field("position")?.split_once(' ')?;
        let (epoch, sub) = (epoch.parse().ok()?, sub.parse().ok()?);
        let keys = [field("seal_key")?, field("next_key")?, field("outer_key")?];
        Ratchet::restore(epoch, sub, |s, n, o| {
            keys.iter()
                .zip([s, n, o])
                .all(|(text, key)| hex::decode_to_slice(text, key).is_ok())
        })
    }

    /// A second ratchet at the same position (both erase their keys).
    pub fn duplicate(&self) -> Ratchet {
        let mut r = Ratchet::empty(self.epoch, self.sub);
        r.keys.seal = self.keys.seal;
        r.keys.next = self.keys.next;
        r.keys.outer = self.keys.outer;
        r.hashes = self.hashes;
        r
    }
}

/// HMAC-SHA-256 of `msg` with `key` (for a stolen or test key).
pub(super) fn hmac(key: &Key, msg: &[u8]) -> Hash32 {
    let mut scratch = Box::new(Scratch::new());
    let tag = scratch.hmac(&key.0, msg);
    scrub_stack();
    tag
}

/// Compares in constant time.
pub(super) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && std::hint::black_box(a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y))) == 0
}

/// Overwrites the stack below the caller, where the compression function
/// left its message schedule.
/// (The zeroed array must exist in memory because its address escapes to
/// `black_box`; 4 KiB is many times the compression function's frame.)
#[inline(never)]
fn scrub_stack() {
    let area = [0u8; 4096];
    std::hint::black_box(&area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use hmac::{Hmac, KeyInit, Mac};
    use sha2::{Digest, Sha256};

    fn h(tag: &[u8], x: &[u8; 32]) -> [u8; 32] {
        let mut d = Sha256::new();
        d.update(tag);
        d.update(x);
        d.finalize().into()
    }

    /// Epoch key `k_e` and seal key `m_{e,s}` the slow, obvious way.
    fn reference(seed: &[u8; 32], e: u64, s: u64) -> ([u8; 32], [u8; 32]) {
        let mut outer = *seed;
        for _ in 0..e / GROUP {
            outer = h(OUTER, &outer);
        }
        let mut k = h(INNER, &outer);
        for _ in 0..e % GROUP {
            k = h(STEP, &k);
        }
        let mut m = h(SEAL, &k);
        for _ in 0..s {
            m = h(NEXT, &m);
        }
        (k, m)
    }

    #[test]
    fn the_in_place_hashes_are_sha256_and_hmac_sha256() {
        let key = Key::generate().unwrap();
        let mut s = Scratch::new();
        s.absorb(STEP, &key.0);
        let mut out = [0u8; 32];
        s.emit(&mut out);
        assert_eq!(out, h(STEP, &key.0));
        for len in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 300] {
            let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.0.as_ref()).unwrap();
            mac.update(&msg);
            let want: [u8; 32] = mac.finalize().into_bytes().into();
            assert_eq!(hmac(&key, &msg), want, "length {len}");
        }
        assert_eq!(s.block, [0; 64]);
        assert_eq!(s.state, [0; 8]);
    }

    #[test]
    fn every_path_to_a_position_gives_the_documented_keys() {
        let seed = Key::generate().unwrap();
        for (e, s) in [
            (0, 0),
            (0, 3),
            (1, 0),
            (GROUP - 1, 2),
            (GROUP, 0),
            (GROUP + 1, 1),
            (3 * GROUP + 17, 0),
        ] {
            let (_, m) = reference(&seed.0, e, s);
            // Straight there, and through every epoch one by one.
            let mut direct = Ratchet::from_seed(&seed);
            direct.advance_to(e);
            let mut slow = Ratchet::from_seed(&seed);
            for step in 1..=e {
                slow.advance_to(step);
            }
            for r in [&mut direct, &mut slow] {
                assert!(r.check(e, s, b"msg", &hmac_with(&m, b"msg")), "({e}, {s})");
                assert_eq!((r.epoch(), r.sub()), (e, s + 1));
                // The next epoch's key it holds is k_{e+1}.
                assert_eq!(*r.keys().1, reference(&seed.0, e + 1, 0).0);
            }
        }
    }

    fn hmac_with(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
        hmac(&Key(Box::new(*key)), msg)
    }

    #[test]
    fn a_position_cannot_check_or_make_an_earlier_seal() {
        let seed = Key::generate().unwrap();
        let (_, m00) = reference(&seed.0, 5, 0);
        let mut r = Ratchet::from_seed(&seed);
        r.advance_to(5);
        let tag = r.seal(b"x");
        assert_eq!(tag, hmac_with(&m00, b"x"));
        assert!(!r.check(5, 0, b"x", &tag), "(5, 0) is gone");
        assert!(!r.check(4, 9, b"x", &tag));
        let copy = r.duplicate();
        assert_eq!(copy.keys().0, r.keys().0);
    }

    /// A month of downtime at one-second epochs, and at the shortest
    /// epoch (10 ms), costs a bounded number of hashes.
    #[test]
    fn stepping_over_a_month_of_epochs_is_cheap() {
        let seed = Key::generate().unwrap();
        let month_ms = 30 * 24 * 3600 * 1000u64;
        for epoch_ms in [1000, 10] {
            let mut r = Ratchet::from_seed(&seed);
            let before = r.hashes();
            r.advance_to(month_ms / epoch_ms);
            let spent = r.hashes() - before;
            assert!(
                spent <= month_ms / epoch_ms / GROUP + GROUP + 4,
                "{spent} hashes for {epoch_ms} ms epochs"
            );
        }
    }
}
