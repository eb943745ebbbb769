//! Baillie-PSW for numbers of any size in Montgomery form on GMP's limbs,
//! faster than GMP's own `mpz_probab_prime_p` and with its answers.
//!
//! The test is GMP's step for step where a step can decide an answer (see
//! `small`): trial division by the odd primes below the bit
//! length, a strong base-2 test, a strong Lucas test with Selfridge's
//! method A parameters. Where the time goes differs:
//!
//! * the base-2 test doubles (a shift and a conditional subtraction)
//!   where a general base would multiply;
//! * the Lucas test runs W_k = V_2k / Q^k, the V-sequence of parameters
//!   (P^2/Q - 2, 1): one squaring and one multiplication a bit, no Q^k and
//!   no U_k (GMP's costs three squarings and two divisions a bit); U_d, V_d
//!   and the V_(d 2^r) are read off W exactly (see `Mont::strong_lucas`);
//! * products are GMP's `mpn_sqr` and `mpn_mul_n` (its assembly, Karatsuba
//!   and Toom-Cook at large sizes), reduced by Montgomery's method word by
//!   word (see `Reduction`).
//!
//! Above [`MAX_OWN_LIMBS`] (4,096 bits) GMP's own test is the faster one,
//! and is called.
//!
//! Only GMP's documented `mpn` functions are used, through `gmp-mpfr-sys`
//! (the bindings `rug` is built on).

use super::small::{exact_multiplier, has_small_factor, selfridge, Selfridge};
use gmp_mpfr_sys::gmp;
use rug::Integer;
use std::cmp::Ordering;

/// One GMP limb: 64 bits (checked below), as `rug` stores them.
type Limb = gmp::limb_t;

const _: () = assert!(gmp::NUMB_BITS == 64, "a limb must be a full 64-bit word");

/// Up to this many limbs (512 bits) the word-by-word reduction runs as
/// Rust code the compiler keeps in registers; above, each word is one
/// call to GMP's `mpn_addmul_1`. Measured (examples in the commit log):
/// at 6 limbs the inline loop saves about a tenth of the test's time, at
/// 52 limbs GMP's assembly is faster.
pub const INLINE_REDC_LIMBS: usize = 8;

/// Above this many limbs (4,096 bits, 1,233 digits) GMP's own test is
/// faster: its reduction there (`mpn_redc_n`, a short product and a
/// wrap-around one) is internal to GMP, and ours from its public functions
/// (quadratic, or two full products) loses to it from about 1,300 digits
/// on (measured: at 4,300 digits 1.27 s with full products, 1.73 s word
/// by word, GMP 1.14 s). So larger numbers go to GMP, with the same
/// answers by construction.
pub const MAX_OWN_LIMBS: usize = 64;

/// Whether `n` is prime: GMP's Baillie-PSW answer (`is_probably_prime(24)`)
/// for any n >= 2^64; every n below 2^64 is answered exactly through
/// [`super::is_prime_u64`].
pub fn is_prime_integer(n: &Integer) -> bool {
    if let Some(small) = n.to_u64() {
        return super::is_prime_u64(small);
    }
    if n.is_negative() {
        return false;
    }
    if n.as_limbs().len() > MAX_OWN_LIMBS {
        // GMP's trial division and test, without ours first.
        return super::is_prime_big(n);
    }
    is_prime_limbs(n.as_limbs())
}

/// Whether the number with little-endian `limbs` (the top one non-zero,
/// at least two of them, so n >= 2^64, and at most [`MAX_OWN_LIMBS`])
/// passes GMP's Baillie-PSW.
fn is_prime_limbs(n: &[Limb]) -> bool {
    debug_assert!(n.len() >= 2 && n[n.len() - 1] != 0);
    if n[0].is_multiple_of(2) {
        return false;
    }
    if has_small_factor(bit_length(n), |m| mod_1(n, m)) {
        return false;
    }
    let mut m = Mont::for_modulus(n);
    m.strong_base_2() && m.strong_lucas()
}

// Safe wrappers around the `mpn` functions, each checking the lengths GMP
// relies on. Rust's borrow rules keep outputs apart from inputs, except in
// the `_in_place` ones, where GMP allows the exact overlap they use.

/// The length of a limb slice as GMP's size type.
fn size(limbs: &[Limb]) -> gmp::size_t {
    gmp::size_t::try_from(limbs.len()).expect("limb counts fit GMP's size type")
}

/// r = a b, with |r| = 2 |a| = 2 |b|.
fn mul_n(r: &mut [Limb], a: &[Limb], b: &[Limb]) {
    assert!(!a.is_empty() && a.len() == b.len() && r.len() == 2 * a.len());
    // SAFETY: r holds 2n limbs, a and b n each; r cannot overlap them (a
    // &mut and two & borrows), as mpn_mul_n requires.
    unsafe { gmp::mpn_mul_n(r.as_mut_ptr(), a.as_ptr(), b.as_ptr(), size(a)) }
}

/// r = a^2, with |r| = 2 |a|.
fn sqr(r: &mut [Limb], a: &[Limb]) {
    assert!(!a.is_empty() && r.len() == 2 * a.len());
    // SAFETY: r holds 2n limbs and does not overlap a, as mpn_sqr requires.
    unsafe { gmp::mpn_sqr(r.as_mut_ptr(), a.as_ptr(), size(a)) }
}

/// r[..|a|] += a q; returns the carry limb.
fn addmul_1(r: &mut [Limb], a: &[Limb], q: Limb) -> Limb {
    assert!(!a.is_empty() && r.len() >= a.len());
    // SAFETY: r has at least n limbs and does not overlap a.
    unsafe { gmp::mpn_addmul_1(r.as_mut_ptr(), a.as_ptr(), size(a), q) }
}

/// The number of bits of a number whose top limb is not zero.
fn bit_length(a: &[Limb]) -> u64 {
    a.len() as u64 * 64 - u64::from(a[a.len() - 1].leading_zeros())
}

/// r = a + b (all the same length); returns the carry.
fn add_n(r: &mut [Limb], a: &[Limb], b: &[Limb]) -> Limb {
    assert!(!a.is_empty() && a.len() == b.len() && r.len() == a.len());
    // SAFETY: three n-limb areas; r does not overlap a or b.
    unsafe { gmp::mpn_add_n(r.as_mut_ptr(), a.as_ptr(), b.as_ptr(), size(a)) }
}

/// r += a (same length); returns the carry.
fn add_in_place(r: &mut [Limb], a: &[Limb]) -> Limb {
    assert!(!a.is_empty() && r.len() == a.len());
    let rp = r.as_mut_ptr();
    // SAFETY: n limbs each; mpn_add_n allows the result to be the first
    // operand exactly, and a does not overlap r (shared and &mut borrows).
    unsafe { gmp::mpn_add_n(rp, rp, a.as_ptr(), size(a)) }
}

/// r -= a (same length); returns the borrow.
fn sub_in_place(r: &mut [Limb], a: &[Limb]) -> Limb {
    assert!(!a.is_empty() && r.len() == a.len());
    let rp = r.as_mut_ptr();
    // SAFETY: as add_in_place, for mpn_sub_n.
    unsafe { gmp::mpn_sub_n(rp, rp, a.as_ptr(), size(a)) }
}

/// r = a - b (same length); returns the borrow.
fn sub_n(r: &mut [Limb], a: &[Limb], b: &[Limb]) -> Limb {
    assert!(!a.is_empty() && a.len() == b.len() && r.len() == a.len());
    // SAFETY: three n-limb areas; r does not overlap a or b.
    unsafe { gmp::mpn_sub_n(r.as_mut_ptr(), a.as_ptr(), b.as_ptr(), size(a)) }
}

/// r = 2 r; returns the bit shifted out.
fn double_in_place(r: &mut [Limb]) -> Limb {
    assert!(!r.is_empty());
    let rp = r.as_mut_ptr();
    // SAFETY: mpn_lshift allows rp == sp (it works from the top down).
    unsafe { gmp::mpn_lshift(rp, rp, size(r), 1) }
}

/// a mod d for a word d > 0.
fn mod_1(a: &[Limb], d: Limb) -> Limb {
    assert!(!a.is_empty() && d != 0);
    // SAFETY: a holds n limbs; the divisor is not zero.
    unsafe { gmp::mpn_mod_1(a.as_ptr(), size(a), d) }
}

/// Compares two numbers of the same length.
fn cmp(a: &[Limb], b: &[Limb]) -> Ordering {
    assert!(a.len() == b.len());
    // SAFETY: both hold n limbs.
    unsafe { gmp::mpn_cmp(a.as_ptr(), b.as_ptr(), size(a)) }.cmp(&0)
}

/// Whether a (top limb non-zero) is a perfect square.
fn is_perfect_square(a: &[Limb]) -> bool {
    assert!(a.last().is_some_and(|&top| top != 0));
    // SAFETY: n limbs with the most significant non-zero, as GMP requires.
    unsafe { gmp::mpn_perfect_square_p(a.as_ptr(), size(a)) != 0 }
}

/// r = 2^(64 |n|) mod n (n's top limb non-zero).
fn r_mod(r: &mut [Limb], n: &[Limb]) {
    let k = n.len();
    assert!(r.len() == k && n[k - 1] != 0);
    let mut numerator = vec![0; k + 1];
    numerator[k] = 1;
    let mut quotient = [0; 2];
    // SAFETY: the numerator has k + 1 >= k limbs, the quotient
    // (k + 1) - k + 1 = 2, the remainder k; the divisor's top limb is not
    // zero; no area overlaps another.
    unsafe {
        gmp::mpn_tdiv_qr(
            quotient.as_mut_ptr(),
            r.as_mut_ptr(),
            0,
            numerator.as_ptr(),
            size(&numerator),
            n.as_ptr(),
            size(n),
        );
    }
}

/// r = a / d for a multiple a of the word d (|r| = |a|).
fn divexact_1(r: &mut [Limb], a: &[Limb], d: Limb) {
    assert!(!a.is_empty() && r.len() == a.len() && d != 0);
    // SAFETY: n limbs each, no overlap, d not zero.
    unsafe { gmp::mpn_divexact_1(r.as_mut_ptr(), a.as_ptr(), size(a), d) }
}

/// Bit `i` of a little-endian number.
fn bit(a: &[Limb], i: u64) -> bool {
    a[(i / 64) as usize] >> (i % 64) & 1 == 1
}

/// Arithmetic modulo an odd `n` of k >= 2 limbs in Montgomery form with
/// R = 2^(64 k): x stands for x R mod n, always fully reduced (below n).
struct Mont {
    /// The odd modulus, k limbs, the top one non-zero.
    n: Vec<Limb>,
    /// -n^-1 mod 2^64, for the word-by-word reduction.
    n_inv: Limb,
    /// R mod n: one in Montgomery form.
    one: Vec<Limb>,
    /// 2k limbs of product, reduced in place.
    t: Vec<Limb>,
    /// How products are reduced.
    reduction: Reduction,
}

/// The ways to reduce a product, each fastest at some sizes; every one
/// gives the same result (the tests run each at every size).
enum Reduction {
    /// Word by word in Rust, up to [`INLINE_REDC_LIMBS`].
    Inline,
    /// Word by word with GMP's `mpn_addmul_1`, above.
    Addmul,
}

/// Which [`Reduction`] to build (the tests pick each in turn).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// [`Reduction::Inline`].
    Inline,
    /// [`Reduction::Addmul`].
    Addmul,
}

impl Mont {
    /// Precomputes the constants for an odd n of two limbs or more.
    fn for_modulus(n: &[Limb]) -> Self {
        let kind = if n.len() > INLINE_REDC_LIMBS {
            Kind::Addmul
        } else {
            Kind::Inline
        };
        Self::with_reduction(n, kind)
    }

    /// As [`Mont::for_modulus`], with the reduction chosen by the caller.
    fn with_reduction(n: &[Limb], kind: Kind) -> Self {
        let k = n.len();
        debug_assert!(k >= 2 && n[0] % 2 == 1 && n[k - 1] != 0);
        // Newton's iteration doubles the correct low bits; an odd n is its
        // own inverse modulo 8, so five steps give 3 * 2^5 >= 64.
        let mut inv = n[0];
        for _ in 0..5 {
            inv = inv.wrapping_mul(2u64.wrapping_sub(n[0].wrapping_mul(inv)));
        }
        let mut one = vec![0; k];
        r_mod(&mut one, n);
        let reduction = match kind {
            Kind::Inline => Reduction::Inline,
            Kind::Addmul => Reduction::Addmul,
        };
        Mont {
            n: n.to_vec(),
            n_inv: inv.wrapping_neg(),
            one,
            t: vec![0; 2 * k],
            reduction,
        }
    }

    /// The number of limbs, k.
    fn len(&self) -> usize {
        self.n.len()
    }

    /// r = t R^-1 mod n, for the product t < n^2 in `self.t`.
    fn reduce(&mut self, r: &mut [Limb]) {
        let k = self.len();
        let carry = match &mut self.reduction {
            Reduction::Inline => {
                // Word by word: adding q n clears limb i; its carry out is
                // kept in limb i (now free) and added at i + k at the end.
                for i in 0..k {
                    let q = self.t[i].wrapping_mul(self.n_inv);
                    let mut carry = 0u64;
                    for (tj, &nj) in self.t[i..i + k].iter_mut().zip(&self.n) {
                        let x =
                            u128::from(q) * u128::from(nj) + u128::from(*tj) + u128::from(carry);
                        *tj = x as u64;
                        carry = (x >> 64) as u64;
                    }
                    self.t[i] = carry;
                }
                let (carries, high) = self.t.split_at(k);
                add_n(r, high, carries)
            }
            Reduction::Addmul => {
                // The same, each word's q n added by GMP's assembly.
                for i in 0..k {
                    let q = self.t[i].wrapping_mul(self.n_inv);
                    let c = addmul_1(&mut self.t[i..i + k], &self.n, q);
                    self.t[i] = c;
                }
                let (carries, high) = self.t.split_at(k);
                add_n(r, high, carries)
            }
        };
        if carry != 0 || cmp(r, &self.n) != Ordering::Less {
            sub_in_place(r, &self.n);
        }
    }

    /// r = a b in Montgomery form.
    fn mul(&mut self, r: &mut [Limb], a: &[Limb], b: &[Limb]) {
        mul_n(&mut self.t, a, b);
        self.reduce(r);
    }

    /// r = a^2 in Montgomery form.
    fn sqr(&mut self, r: &mut [Limb], a: &[Limb]) {
        sqr(&mut self.t, a);
        self.reduce(r);
    }

    /// r -= a mod n.
    fn sub_assign(&self, r: &mut [Limb], a: &[Limb]) {
        if sub_in_place(r, a) != 0 {
            add_in_place(r, &self.n);
        }
    }

    /// r += a mod n.
    fn add_assign(&self, r: &mut [Limb], a: &[Limb]) {
        if add_in_place(r, a) != 0 || cmp(r, &self.n) != Ordering::Less {
            sub_in_place(r, &self.n);
        }
    }

    /// r = 2 r mod n.
    fn double(&self, r: &mut [Limb]) {
        if double_in_place(r) != 0 || cmp(r, &self.n) != Ordering::Less {
            sub_in_place(r, &self.n);
        }
    }

    /// The number of bits of n.
    fn bits(&self) -> u64 {
        bit_length(&self.n)
    }

    /// The strong probable-prime test to base 2: with n - 1 = d 2^s, d odd,
    /// 2^d = 1 or 2^(d 2^r) = -1 for some r < s.
    fn strong_base_2(&mut self) -> bool {
        let k = self.len();
        // n is odd, so n - 1 is n without bit 0: s is n's lowest set bit
        // above bit 0 (n >= 2^64 has one).
        let s = (1..self.bits())
            .find(|&i| bit(&self.n, i))
            .expect("n >= 2^64 has a set bit above bit 0");
        let mut minus_one = vec![0; k];
        sub_n(&mut minus_one, &self.n, &self.one);
        // Left to right over d's bits (n's bits from s up): squaring, and
        // doubling for each set bit; starting from 2 for the top bit.
        let mut x = self.one.clone();
        self.double(&mut x);
        let mut y = vec![0; k];
        for i in (s..self.bits() - 1).rev() {
            self.sqr(&mut y, &x);
            std::mem::swap(&mut x, &mut y);
            if bit(&self.n, i) {
                self.double(&mut x);
            }
        }
        if x == self.one || x == minus_one {
            return true;
        }
        for _ in 1..s {
            self.sqr(&mut y, &x);
            std::mem::swap(&mut x, &mut y);
            if x == minus_one {
                return true;
            }
        }
        false
    }

    /// R / q mod n for a word q coprime to n: (R + k n) / q with the k
    /// that makes the division exact.
    fn div_small(&self, q: Limb) -> Vec<Limb> {
        let k = self.len();
        let multiplier = exact_multiplier(mod_1(&self.one, q), mod_1(&self.n, q), q);
        let mut sum = self.one.clone();
        sum.push(0);
        sum[k] = addmul_1(&mut sum[..k], &self.n, multiplier);
        let mut quotient = vec![0; k + 1];
        divexact_1(&mut quotient, &sum, q);
        // (R + k n) / q < n, so the top limb is zero.
        debug_assert!(quotient[k] == 0);
        quotient.truncate(k);
        quotient
    }

    /// The strong Lucas test with Selfridge's parameters: with
    /// n + 1 = d 2^s, d odd, U_d = 0 or V_(d 2^r) = 0 for some r < s.
    ///
    /// It runs on W_k = V_2k / Q^k, the V-sequence of (P' = P^2/Q - 2, 1),
    /// so W_2k = W_k^2 - 2 and W_(2k+1) = W_k W_(k+1) - P'. With d = 2m + 1,
    /// (W_m, W_(m+1)) from the ladder, and Q and D invertible mod n:
    /// * V_d = Q^(m+1) (W_m + W_(m+1)), from V_(2m+2) = P V_(2m+1) - Q V_2m;
    /// * D U_d = 2 V_(d+1) - P V_d = Q^(m+1) (W_(m+1) - W_m);
    /// * V_(d 2^r) = Q^(d 2^(r-1)) W_(d 2^(r-1)) for r >= 1.
    fn strong_lucas(&mut self) -> bool {
        let k = self.len();
        let n = &self.n;
        let Selfridge::Found { q_abs, q_negative } =
            selfridge(|m| mod_1(n, m), || is_perfect_square(n))
        else {
            return false;
        };
        // 1/Q exists: trial division and the search leave Q coprime to n.
        let mut p = self.div_small(q_abs);
        if q_negative {
            let mut negated = vec![0; k];
            self.sub_assign(&mut negated, &p);
            p = negated;
        }
        let mut two = self.one.clone();
        self.double(&mut two);
        self.sub_assign(&mut p, &two);
        // n + 1 = d 2^s: s is the number of trailing one bits of n. Some
        // limb has a zero bit: 2^(64k) - 1 is a multiple of 5, so (5/n) = 0
        // ended the search above.
        let i = self
            .n
            .iter()
            .position(|&l| l != Limb::MAX)
            .expect("n = 2^(64k) - 1 is a multiple of 5, composite before here");
        let s = i as u64 * 64 + u64::from(self.n[i].trailing_ones());
        // m = (d - 1) / 2 = n >> (s + 1); the ladder runs over its bits
        // from (W_0, W_1) = (2, P').
        let (mut w, mut w1) = (two.clone(), p.clone());
        let mut mixed = vec![0; k];
        let mut square = vec![0; k];
        for i in (s + 1..self.bits()).rev() {
            self.mul(&mut mixed, &w, &w1);
            self.sub_assign(&mut mixed, &p);
            if bit(&self.n, i) {
                // (W_k, W_(k+1)) -> (W_(2k+1), W_(2k+2)).
                self.sqr(&mut square, &w1);
                self.sub_assign(&mut square, &two);
                std::mem::swap(&mut w, &mut mixed);
                std::mem::swap(&mut w1, &mut square);
            } else {
                // (W_k, W_(k+1)) -> (W_2k, W_(2k+1)).
                self.sqr(&mut square, &w);
                self.sub_assign(&mut square, &two);
                std::mem::swap(&mut w1, &mut mixed);
                std::mem::swap(&mut w, &mut square);
            }
        }
        // U_d = 0, or V_d = 0.
        if w == w1 {
            return true;
        }
        let mut sum = w.clone();
        self.add_assign(&mut sum, &w1);
        if sum.iter().all(|&l| l == 0) {
            return true;
        }
        // V_(d 2^r) = 0 for some 1 <= r < s: W_d, W_2d, ..., W_(d 2^(s-2)).
        let mut x = vec![0; k];
        self.mul(&mut x, &w, &w1);
        self.sub_assign(&mut x, &p);
        for _ in 1..s {
            if x.iter().all(|&l| l == 0) {
                return true;
            }
            self.sqr(&mut square, &x);
            std::mem::swap(&mut x, &mut square);
            self.sub_assign(&mut x, &two);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rug::integer::{IsPrime, Order};

    /// GMP's answer, the reference.
    fn gmp(n: &Integer) -> bool {
        n.is_probably_prime(24) != IsPrime::No
    }

    /// splitmix64: deterministic draws.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A random number of exactly `bits` bits.
    fn random_bits(state: &mut u64, bits: u32) -> Integer {
        let limbs: Vec<u64> = (0..bits.div_ceil(64)).map(|_| splitmix(state)).collect();
        let mut n = Integer::from_digits(&limbs, Order::Lsf);
        n.keep_bits_mut(bits);
        n.set_bit(bits - 1, true);
        n
    }

    fn int(limbs: &[Limb]) -> Integer {
        Integer::from_digits(limbs, Order::Lsf)
    }

    /// Both reductions, the Montgomery operations and the constants,
    /// against GMP at sizes from 2 limbs to past the large threshold.
    #[test]
    fn montgomery_arithmetic_matches_gmp() {
        let mut state = 3;
        for (i, bits) in [65u32, 128, 129, 200, 332, 1000, 1024, 4100, 4200]
            .into_iter()
            .enumerate()
        {
            let mut n = random_bits(&mut state, bits);
            n.set_bit(0, true);
            if i == 1 {
                // All ones: the reductions' carries at their largest.
                n = (Integer::from(1) << bits) - 1u32;
            }
            let k = n.as_limbs().len();
            let r = Integer::from(1) << (64 * k as u32);
            let r_inv = Integer::from(r.invert_ref(&n).unwrap());
            for large in [Kind::Inline, Kind::Addmul] {
                let mut m = Mont::with_reduction(n.as_limbs(), large);
                assert_eq!(int(&m.one), Integer::from(&r % &n), "R mod n, {bits} bits");
                assert_eq!(
                    m.n_inv.wrapping_mul(n.as_limbs()[0]),
                    u64::MAX,
                    "-1/n mod 2^64"
                );
                let mut out = vec![0; k];
                for j in 0..6 {
                    let mut a = random_bits(&mut state, bits + 3) % &n;
                    let b = random_bits(&mut state, bits + 3) % &n;
                    if j == 0 {
                        a = Integer::from(&n - 1u32);
                    }
                    let pad = |x: &Integer| {
                        let mut v = vec![0; k];
                        v[..x.as_limbs().len()].copy_from_slice(x.as_limbs());
                        v
                    };
                    let (la, lb) = (pad(&a), pad(&b));
                    m.mul(&mut out, &la, &lb);
                    assert_eq!(
                        int(&out),
                        Integer::from(&a * &b) * &r_inv % &n,
                        "mul, {bits} bits, {large:?}"
                    );
                    m.sqr(&mut out, &la);
                    assert_eq!(
                        int(&out),
                        Integer::from(&a * &a) * &r_inv % &n,
                        "sqr, {bits} bits, {large:?}"
                    );
                    let mut sum = la.clone();
                    m.add_assign(&mut sum, &lb);
                    assert_eq!(int(&sum), Integer::from(&a + &b) % &n, "add");
                    let mut diff = la.clone();
                    m.sub_assign(&mut diff, &lb);
                    assert_eq!(int(&diff), Integer::from(&a - &b).modulo(&n), "sub");
                    let mut twice = la.clone();
                    m.double(&mut twice);
                    assert_eq!(int(&twice), Integer::from(&a * 2u32) % &n, "double");
                }
                for q in [1u64, 2, 3, 4, 5, 6, 7, 10, 12, 255, 1 << 40] {
                    if Integer::from(q).gcd(&n) != 1 {
                        continue;
                    }
                    let want = (&r * Integer::from(q).invert(&n).unwrap()) % &n;
                    assert_eq!(int(&m.div_small(q)), want, "R / {q} mod n, {bits} bits");
                }
            }
        }
    }

    /// The strong base-2 test through GMP's pow_mod: the reference for
    /// the base-2 half alone (most composites fail it, primes pass).
    fn reference_strong_base_2(n: &Integer) -> bool {
        let minus_one = Integer::from(n - 1u32);
        let s = minus_one.find_one(0).expect("n > 1");
        let mut x = Integer::from(2)
            .pow_mod(&Integer::from(&minus_one >> s), n)
            .expect("n > 0");
        let mut passes = x == 1 || x == minus_one;
        for _ in 1..s {
            x.square_mut();
            x %= n;
            passes |= x == minus_one;
        }
        passes
    }

    #[test]
    fn strong_base_2_alone_matches_gmp() {
        let mut state = 0xba52;
        let mut passed = 0;
        for i in 0..600u32 {
            let mut n = random_bits(&mut state, 65 + i % 700) | 1u32;
            if i % 5 == 0 {
                n.next_prime_mut();
            }
            let want = reference_strong_base_2(&n);
            passed += u32::from(want);
            for kind in [Kind::Inline, Kind::Addmul] {
                let mut m = Mont::with_reduction(n.as_limbs(), kind);
                assert_eq!(m.strong_base_2(), want, "{n}, {kind:?}");
            }
        }
        assert!(passed > 60 && passed < 500, "{passed} passed");
    }

    #[test]
    fn linear_helpers_match_gmp() {
        let mut state = 0x11;
        for len in 1..6usize {
            for round in 0..200 {
                let mut draw = || -> Vec<Limb> {
                    (0..len)
                        .map(|_| match round % 4 {
                            0 => Limb::MAX,
                            1 => 0,
                            _ => splitmix(&mut state),
                        })
                        .collect()
                };
                let (a, mut b) = (draw(), draw());
                if round % 7 == 0 {
                    b = a.clone();
                }
                let (ia, ib) = (int(&a), int(&b));
                let r_bits = 64 * len as u32;
                let modulus = Integer::from(1) << r_bits;
                let mut r = vec![0; len];
                let carry = add_n(&mut r, &a, &b);
                let sum = Integer::from(&ia + &ib);
                assert_eq!(int(&r), Integer::from(&sum % &modulus));
                assert_eq!(carry, u64::from(sum >= modulus));
                let mut r2 = a.clone();
                assert_eq!(add_in_place(&mut r2, &b), carry);
                assert_eq!(r2, r);
                let borrow = sub_n(&mut r, &a, &b);
                assert_eq!(int(&r), Integer::from(&ia - &ib).modulo(&modulus));
                assert_eq!(borrow, u64::from(ia < ib));
                let mut r3 = a.clone();
                assert_eq!(sub_in_place(&mut r3, &b), borrow);
                assert_eq!(r3, r);
                let mut twice = a.clone();
                let out = double_in_place(&mut twice);
                let doubled = Integer::from(&ia * 2u32);
                assert_eq!(int(&twice), Integer::from(&doubled % &modulus));
                assert_eq!(out, u64::from(doubled >= modulus));
                assert_eq!(cmp(&a, &b), ia.cmp(&ib));
            }
        }
        for bits in [65u32, 127, 128, 129, 4096] {
            let n = (Integer::from(1) << (bits - 1)) + 1u32;
            assert_eq!(bit_length(n.as_limbs()), u64::from(bits));
        }
    }

    #[test]
    fn trial_division_tries_the_primes_below_the_bit_length() {
        // 127 * q with q prime: 127 lies below the bit length when n has
        // 128 bits or more; GMP's rule then finds it (a composite either
        // way: the strong tests find it too, so is_prime_limbs cannot tell).
        let q = (Integer::from(1) << 121u32).next_prime();
        let n = Integer::from(&q * 127u32);
        assert_eq!(bit_length(n.as_limbs()), 128);
        assert!(has_small_factor(bit_length(n.as_limbs()), |m| mod_1(
            n.as_limbs(),
            m
        )));
        let small = Integer::from(&q * 131u32);
        assert!(!has_small_factor(127, |m| mod_1(small.as_limbs(), m)));
    }

    #[test]
    fn both_reductions_give_gmps_answers() {
        let mut state = 0xb1;
        for i in 0..300u32 {
            let bits = 65 + (i * 37) % 700;
            let mut n = random_bits(&mut state, bits);
            if i % 3 == 0 {
                n.next_prime_mut();
            }
            n.set_bit(0, true);
            let want = gmp(&n);
            for large in [Kind::Inline, Kind::Addmul] {
                let mut m = Mont::with_reduction(n.as_limbs(), large);
                let got = !has_small_factor(u64::from(bits), |d| mod_1(n.as_limbs(), d))
                    && m.strong_base_2()
                    && m.strong_lucas();
                assert_eq!(got, want, "{n}, {large:?}");
            }
        }
    }

    #[test]
    fn random_numbers_and_primes_agree_with_gmp() {
        let mut state = 0xb9;
        let mut primes = 0;
        for i in 0..1500u32 {
            let bits = 65 + i % 600;
            let mut n = random_bits(&mut state, bits);
            if i % 4 == 0 {
                n.next_prime_mut();
            }
            let want = gmp(&n);
            primes += u32::from(want);
            assert_eq!(is_prime_integer(&n), want, "{n}");
        }
        assert!(primes > 370, "{primes} primes");
    }

    #[test]
    fn above_the_own_limit_gmp_answers() {
        // 2^4423 - 1 (prime, 70 limbs) and composites just above the limit.
        let mersenne = (Integer::from(1) << 4423u32) - 1u32;
        assert!(is_prime_integer(&mersenne));
        assert!(!is_prime_integer(&((Integer::from(1) << 4421u32) - 1u32)));
        let mut state = 0x4097;
        for _ in 0..20 {
            let n = random_bits(&mut state, 64 * MAX_OWN_LIMBS as u32 + 1) | 1u32;
            assert!(n.as_limbs().len() > MAX_OWN_LIMBS);
            assert_eq!(is_prime_integer(&n), gmp(&n), "{n}");
        }
    }

    #[test]
    fn two_limb_numbers_agree_with_the_128_bit_path() {
        let mut state = 0x2b;
        for i in 0..5000u32 {
            let n = random_bits(&mut state, 65 + i % 64);
            let wide = super::super::wide::is_prime_u128(n.to_u128().unwrap());
            assert_eq!(is_prime_integer(&n), wide, "{n}");
        }
    }

    #[test]
    fn below_2_64_and_negatives() {
        for (n, want) in [
            (-7i64, false),
            (-1, false),
            (0, false),
            (1, false),
            (2, true),
            (97, true),
            (561, false),
        ] {
            assert_eq!(is_prime_integer(&Integer::from(n)), want, "{n}");
        }
        assert!(is_prime_integer(&Integer::from(
            18_446_744_073_709_551_557u64
        )));
        assert!(!is_prime_integer(&(Integer::from(1) << 200u32)));
        assert!(!is_prime_integer(&-((Integer::from(1) << 127u32) - 1u32)));
    }

    #[test]
    fn mersenne_numbers() {
        // Composite Mersenne numbers are strong pseudoprimes to base 2:
        // only the Lucas test rejects them. 2^p - 1 for these p is prime.
        for e in [
            61u32, 89, 107, 127, 521, 607, 1279, 2203, 2281, 3217, 4253, 4423,
        ] {
            let n = (Integer::from(1) << e) - 1u32;
            assert!(is_prime_integer(&n), "2^{e} - 1");
        }
        for e in [67u32, 131, 137, 139, 149, 499, 503, 1009, 4421] {
            let n = (Integer::from(1) << e) - 1u32;
            let mut m = Mont::for_modulus(n.as_limbs());
            assert!(
                m.strong_base_2(),
                "2^{e} - 1 is a base-2 strong pseudoprime"
            );
            assert!(!m.strong_lucas(), "2^{e} - 1");
            assert!(!is_prime_integer(&n), "2^{e} - 1");
        }
    }

    #[test]
    fn base_2_pseudoprimes_fail_the_lucas_test() {
        // p (2p - 1) with both prime and 2p - 1 = +-1 (mod 8) is a base-2
        // Fermat pseudoprime; the strong ones reach the Lucas test.
        let mut state = 0x9a;
        let mut strong = 0;
        let mut tried = 0;
        while strong < 8 {
            let bits = 70 + (splitmix(&mut state) % 100) as u32;
            let mut p = random_bits(&mut state, bits);
            let q = loop {
                p.next_prime_mut();
                let q = Integer::from(&p * 2u32) - 1u32;
                if matches!(q.mod_u(8), 1 | 7) && gmp(&q) {
                    break q;
                }
            };
            let n = Integer::from(&p * &q);
            tried += 1;
            let mut m = Mont::for_modulus(n.as_limbs());
            if m.strong_base_2() {
                strong += 1;
                assert!(!m.strong_lucas(), "{p} * {q}");
                assert!(!is_prime_integer(&n));
            }
            assert!(tried < 400, "{strong} strong pseudoprimes in {tried} tries");
        }
    }

    #[test]
    fn primes_whose_low_limbs_are_all_ones() {
        // n + 1 = d 2^s with s >= 64: the trailing ones run past limb 0.
        for (limbs, extra) in [(2u32, 0u32), (3, 0), (3, 64), (5, 3)] {
            let mut a = Integer::from(1) << (64 * (limbs - 1) - 1);
            let n = loop {
                let n = (Integer::from(&a + 1u32) << (64 + extra)) - 1u32;
                if gmp(&n) {
                    break n;
                }
                a += 1u32;
            };
            assert!(n.as_limbs()[0] == Limb::MAX, "{n}");
            let mut m = Mont::for_modulus(n.as_limbs());
            assert!(m.strong_lucas(), "{n}");
            assert!(is_prime_integer(&n), "{n}");
        }
    }

    #[test]
    fn all_ones_is_composite_before_the_ladder() {
        for k in 2..6u32 {
            let n = (Integer::from(1) << (64 * k)) - 1u32;
            assert!(n.is_divisible_u(5));
            assert!(
                !Mont::for_modulus(n.as_limbs()).strong_lucas(),
                "2^(64 {k}) - 1"
            );
        }
    }

    #[test]
    fn squares_and_small_factors_are_composite() {
        let mut state = 0x5e;
        for bits in [40u32, 64, 65, 100, 300, 700] {
            let p = random_bits(&mut state, bits).next_prime();
            let square = Integer::from(&p * &p);
            assert!(!is_prime_integer(&square), "{p}^2");
            let mut m = Mont::for_modulus(square.as_limbs());
            assert!(!m.strong_lucas(), "{p}^2 has no Selfridge D");
            // A factor just below the bit length, and one just above, which
            // trial division leaves to the strong tests.
            let n = Integer::from(&p * 61u32);
            assert!(!is_prime_integer(&n));
        }
    }
}
