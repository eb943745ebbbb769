//! Baillie-PSW for 2^64 <= n < 2^128 in native 128-bit arithmetic, so a
//! 39-digit number costs about what a 64-bit one does and stays on the
//! worker.
//!
//! The test is GMP's (`mpz_probab_prime_p` with 24 rounds, which is
//! Baillie-PSW alone), step for step where a step can decide an answer:
//! trial division by the odd primes below n's bit length, a strong base-2
//! test, and a strong Lucas test with Selfridge's method A parameters
//! (P = 1, Q = (1 - D) / 4, perfect squares composite). So the answers are
//! GMP's; the differential tests check that on millions of numbers.
//!
//! Arithmetic is in Montgomery form with R = 2^128. The base-2 test
//! doubles instead of multiplying by the base. The Lucas test runs the
//! V-sequence of parameters (P^2/Q - 2, 1), whose terms W_k = V_2k / Q^k
//! need neither Q^k nor U: one squaring and one multiplication per bit
//! (see `Mont::strong_lucas` for how U_d, V_d and the V_(d 2^r) are read off
//! it exactly).
//!
//! Hand-written: the crate made for this job, `machine-prime` with its
//! `wide` feature, runs a different Lucas test (a Lucas-V test with its own
//! parameter search, no Selfridge parameters) whose answers are not
//! promised to match GMP's, and its current source needs a nightly
//! compiler.

use super::small::{exact_multiplier, has_small_factor, selfridge, Selfridge};

/// Whether `n` is prime: exact below 2^64 (through [`super::is_prime_u64`]),
/// GMP's Baillie-PSW answer above.
pub fn is_prime_u128(n: u128) -> bool {
    if let Ok(small) = u64::try_from(n) {
        return super::is_prime_u64(small);
    }
    if n.is_multiple_of(2) {
        return false;
    }
    if has_small_factor_u128(n) {
        return false;
    }
    let m = Mont::for_modulus(n);
    m.strong_base_2() && m.strong_lucas()
}

/// GMP's trial division: whether an odd prime below n's bit length
/// divides n.
fn has_small_factor_u128(n: u128) -> bool {
    let bits = u64::from(128 - n.leading_zeros());
    has_small_factor(bits, |m| (n % u128::from(m)) as u64)
}

/// The full 256-bit product of two 128-bit numbers, as (low, high).
#[inline(always)]
fn mul_wide(a: u128, b: u128) -> (u128, u128) {
    let (a0, a1) = (a & LOW, a >> 64);
    let (b0, b1) = (b & LOW, b >> 64);
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    // Three terms below 2^64 each: no overflow.
    let mid = (p00 >> 64) + (p01 & LOW) + (p10 & LOW);
    let low = (p00 & LOW) | (mid << 64);
    let high = p11 + (p01 >> 64) + (p10 >> 64) + (mid >> 64);
    (low, high)
}

/// The low 64 bits of a u128.
const LOW: u128 = u64::MAX as u128;

/// Arithmetic modulo an odd `n` in [2^64, 2^128), in Montgomery form with
/// R = 2^128: x stands for x R mod n, always fully reduced (below n).
struct Mont {
    /// The odd modulus.
    n: u128,
    /// n^-1 mod 2^128, for the reduction.
    n_inv: u128,
    /// R mod n: one in Montgomery form.
    one: u128,
}

impl Mont {
    /// Precomputes the constants for an odd `n >= 2^64`. (Not called `new`:
    /// cargo-mutants leaves functions of that name alone.)
    fn for_modulus(n: u128) -> Self {
        debug_assert!(n % 2 == 1 && n >> 64 != 0);
        // Newton's iteration doubles the correct low bits; an odd n is its
        // own inverse modulo 8, so six steps give 3 * 2^6 >= 128 bits.
        let mut n_inv = n;
        for _ in 0..6 {
            n_inv = n_inv.wrapping_mul(2u128.wrapping_sub(n.wrapping_mul(n_inv)));
        }
        // 2^128 - n = 2^128 (mod n).
        let one = n.wrapping_neg() % n;
        Mont { n, n_inv, one }
    }

    /// t R^-1 mod n for t = (low, high) < n R.
    #[inline(always)]
    fn reduce(&self, low: u128, high: u128) -> u128 {
        // m n agrees with t in its low 128 bits, so t - m n = (high - mn_high) R.
        let m = low.wrapping_mul(self.n_inv);
        let (_, mn_high) = mul_wide(m, self.n);
        let (diff, borrow) = high.overflowing_sub(mn_high);
        if borrow {
            diff.wrapping_add(self.n)
        } else {
            diff
        }
    }

    /// a b in Montgomery form.
    #[inline(always)]
    fn mul(&self, a: u128, b: u128) -> u128 {
        let (low, high) = mul_wide(a, b);
        self.reduce(low, high)
    }

    /// a^2 in Montgomery form.
    #[inline(always)]
    fn sqr(&self, a: u128) -> u128 {
        let (a0, a1) = (a & LOW, a >> 64);
        let p00 = a0 * a0;
        let p01 = a0 * a1;
        let p11 = a1 * a1;
        // 2 p01 may need 129 bits: add its halves separately.
        let mid = (p00 >> 64) + ((p01 & LOW) << 1);
        let low = (p00 & LOW) | (mid << 64);
        let high = p11 + ((p01 >> 64) << 1) + (mid >> 64);
        self.reduce(low, high)
    }

    /// a + b mod n.
    #[inline(always)]
    fn add(&self, a: u128, b: u128) -> u128 {
        let (sum, carry) = a.overflowing_add(b);
        if carry || sum >= self.n {
            sum.wrapping_sub(self.n)
        } else {
            sum
        }
    }

    /// a - b mod n.
    #[inline(always)]
    fn sub(&self, a: u128, b: u128) -> u128 {
        let (diff, borrow) = a.overflowing_sub(b);
        if borrow {
            diff.wrapping_add(self.n)
        } else {
            diff
        }
    }

    /// The strong probable-prime test to base 2: with n - 1 = d 2^s, d odd,
    /// 2^d = 1 or 2^(d 2^r) = -1 for some r < s.
    fn strong_base_2(&self) -> bool {
        let s = (self.n - 1).trailing_zeros();
        let d = self.n >> s;
        let minus_one = self.n - self.one;
        // Left to right from the top bit: squaring, and doubling for each
        // set bit (2x costs an addition, not a multiplication).
        let top = 127 - d.leading_zeros();
        let mut x = self.add(self.one, self.one);
        for i in (0..top).rev() {
            x = self.sqr(x);
            if d >> i & 1 == 1 {
                x = self.add(x, x);
            }
        }
        if x == self.one || x == minus_one {
            return true;
        }
        for _ in 1..s {
            x = self.sqr(x);
            if x == minus_one {
                return true;
            }
        }
        false
    }

    /// R / q mod n for a small q coprime to n: (R + k n) / q with the k
    /// that makes it exact, computed in pieces that cannot overflow.
    fn div_small(&self, q: u64) -> u128 {
        let q128 = u128::from(q);
        let (one_q, one_r) = (self.one / q128, (self.one % q128) as u64);
        let (n_q, n_r) = (self.n / q128, (self.n % q128) as u64);
        let k = exact_multiplier(one_r, n_r, q);
        // (one + k n) / q = one_q + k n_q + (one_r + k n_r) / q, each part
        // exact; the sum is below n as one + k n < q n.
        let tail = (u128::from(one_r) + u128::from(k) * u128::from(n_r)) / q128;
        one_q + u128::from(k) * n_q + tail
    }

    /// The strong Lucas test with Selfridge's parameters: with
    /// n + 1 = d 2^s, d odd, U_d = 0 or V_(d 2^r) = 0 for some r < s.
    ///
    /// It runs on W_k = V_2k / Q^k, the V-sequence of (P' = P^2/Q - 2, 1)
    /// (the roots a^2/Q and b^2/Q of the new polynomial multiply to 1), so
    /// W_2k = W_k^2 - 2 and W_(2k+1) = W_k W_(k+1) - P'. With d = 2m + 1
    /// and (W_m, W_(m+1)) from the ladder, and Q and D invertible mod n:
    /// * V_d = Q^(m+1) (W_m + W_(m+1)), from V_(2m+2) = P V_(2m+1) - Q V_2m;
    /// * D U_d = 2 V_(d+1) - P V_d = Q^(m+1) (W_(m+1) - W_m);
    /// * V_(d 2^r) = Q^(d 2^(r-1)) W_(d 2^(r-1)) for r >= 1.
    ///
    /// Each condition is then exactly one of the standard test's.
    fn strong_lucas(&self) -> bool {
        let n = self.n;
        let found = selfridge(
            |m| (n % u128::from(m)) as u64,
            || {
                let root = n.isqrt();
                root * root == n
            },
        );
        let Selfridge::Found { q_abs, q_negative } = found else {
            return false;
        };
        // Trial division and the search leave Q coprime to n (its primes are
        // 3 or an earlier |D|), so 1/Q exists.
        let inv_q = self.div_small(q_abs);
        let inv_q = if q_negative {
            self.sub(0, inv_q)
        } else {
            inv_q
        };
        let two = self.add(self.one, self.one);
        let p = self.sub(inv_q, two);
        let s = n.trailing_ones();
        // For n = 2^127 - 1, s + 1 = 128: m = 0, not a shift by 128.
        let m = n.checked_shr(s + 1).unwrap_or(0);
        // Ladder over the bits of m from (W_0, W_1) = (2, P').
        let (mut w, mut w1) = (two, p);
        let bits = 128 - m.leading_zeros();
        for i in (0..bits).rev() {
            let mixed = self.sub(self.mul(w, w1), p);
            if m >> i & 1 == 1 {
                w = mixed;
                w1 = self.sub(self.sqr(w1), two);
            } else {
                w1 = mixed;
                w = self.sub(self.sqr(w), two);
            }
        }
        // U_d = 0 or V_d = 0.
        if w == w1 || self.add(w, w1) == 0 {
            return true;
        }
        // V_(d 2^r) = 0 for some 1 <= r < s: W_d, W_2d, ..., W_(d 2^(s-2)).
        let mut x = self.sub(self.mul(w, w1), p);
        for _ in 1..s {
            if x == 0 {
                return true;
            }
            x = self.sub(self.sqr(x), two);
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rug::integer::IsPrime;
    use rug::Integer;

    /// GMP's answer, the reference.
    fn gmp(n: u128) -> bool {
        Integer::from(n).is_probably_prime(24) != IsPrime::No
    }

    /// splitmix64: deterministic draws.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn draw_u128(state: &mut u64) -> u128 {
        u128::from(splitmix(state)) << 64 | u128::from(splitmix(state))
    }

    #[test]
    fn mul_wide_matches_gmp() {
        let mut state = 1;
        for _ in 0..2000 {
            let (a, b) = (draw_u128(&mut state), draw_u128(&mut state));
            let (low, high) = mul_wide(a, b);
            let exact = Integer::from(a) * b;
            assert_eq!(Integer::from(low), exact.clone().keep_bits(128));
            assert_eq!(Integer::from(high), (exact >> 128u32));
        }
        assert_eq!(mul_wide(u128::MAX, u128::MAX), (1, u128::MAX - 1));
    }

    /// Montgomery operations checked against GMP: the arithmetic must be
    /// right on its own, not only through the tests' answers.
    #[test]
    fn montgomery_arithmetic_matches_gmp() {
        let mut state = 7;
        let r = Integer::from(1) << 128u32;
        for i in 0..400 {
            let n = match i {
                0 => u128::MAX,
                1 => (1 << 64) + 1,
                2 => (1 << 127) + 1,
                3 => u128::MAX - 2,
                _ => (draw_u128(&mut state) >> (i % 64)) | 1 << 64 | 1,
            };
            let m = Mont::for_modulus(n);
            let big_n = Integer::from(n);
            assert_eq!(n.wrapping_mul(m.n_inv), 1, "n = {n}");
            assert_eq!(Integer::from(m.one), Integer::from(&r % &big_n), "n = {n}");
            let r_inv = Integer::from(r.invert_ref(&big_n).unwrap());
            for _ in 0..20 {
                let (a, b) = (draw_u128(&mut state) % n, draw_u128(&mut state) % n);
                let want = |x: Integer| x * &r_inv % &big_n;
                assert_eq!(
                    Integer::from(m.mul(a, b)),
                    want(Integer::from(a) * b),
                    "{a} * {b} mod {n}"
                );
                assert_eq!(
                    Integer::from(m.sqr(a)),
                    want(Integer::from(a) * a),
                    "{a}^2 mod {n}"
                );
                assert_eq!(Integer::from(m.add(a, b)), (Integer::from(a) + b) % &big_n);
                assert_eq!(
                    Integer::from(m.sub(a, b)),
                    (Integer::from(a) - b).modulo(&big_n)
                );
            }
            // The extremes: n - 1 squared, and sums that overflow 128 bits.
            let top = n - 1;
            assert_eq!(
                Integer::from(m.sqr(top)),
                (Integer::from(top) * top * &r_inv % &big_n)
            );
            assert_eq!(
                Integer::from(m.add(top, top)),
                (Integer::from(top) * 2u32) % &big_n
            );
            assert_eq!(m.sub(0, top), 1);
            assert_eq!(m.sub(top, top), 0);
            for q in [1u64, 2, 3, 4, 5, 6, 7, 12, 255] {
                if Integer::from(q).gcd(&big_n) != 1 {
                    continue;
                }
                let want = (&r * Integer::from(q).invert(&big_n).unwrap()) % &big_n;
                assert_eq!(Integer::from(m.div_small(q)), want, "R / {q} mod {n}");
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
        let mut state = 0xba5e;
        let mut passed = 0;
        for i in 0..5000u32 {
            let mut n = draw_u128(&mut state) >> (i % 64) | 1 << 64 | 1;
            if i % 5 == 0 {
                n = Integer::from(n).next_prime().to_u128().unwrap_or(n);
            }
            let want = reference_strong_base_2(&Integer::from(n));
            passed += u32::from(want);
            assert_eq!(Mont::for_modulus(n).strong_base_2(), want, "n = {n}");
        }
        assert!(passed > 500 && passed < 4500, "{passed} passed");
    }

    #[test]
    fn squares_fail_the_lucas_test() {
        // No Selfridge D exists for a square: the search must notice the
        // square (GMP's answer, composite) rather than run forever.
        let mut state = 0x5a;
        for bits in [33u32, 40, 50, 63, 64] {
            let p = Integer::from(splitmix(&mut state) >> (64 - bits) | 1 << (bits - 1))
                .next_prime()
                .to_u128()
                .unwrap();
            let square = p * p;
            assert!(square >> 64 != 0);
            assert!(!Mont::for_modulus(square).strong_lucas(), "{p}^2");
        }
    }

    #[test]
    fn trial_division_stops_at_the_bit_length() {
        // 127 q has 128 bits when q is just above 2^121, 127 when just
        // below 2^121 - 2^114: 127 is tried in the first case only.
        let q = Integer::from(Integer::u_pow_u(2, 121))
            .next_prime()
            .to_u128()
            .unwrap();
        assert_eq!(128 - (127 * q).leading_zeros(), 128);
        assert!(has_small_factor_u128(127 * q));
        let q = Integer::from((1u128 << 120) + 1)
            .next_prime()
            .to_u128()
            .unwrap();
        assert_eq!(128 - (127 * q).leading_zeros(), 127);
        assert!(!has_small_factor_u128(127 * q));
        assert!(has_small_factor_u128(3 * q));
    }

    #[test]
    fn below_2_64_goes_to_the_exact_path() {
        for n in [
            0u128,
            1,
            2,
            3,
            4,
            561,
            3_215_031_751,
            u128::from(u64::MAX),
            18_446_744_073_709_551_557,
        ] {
            assert_eq!(is_prime_u128(n), gmp(n), "n = {n}");
        }
    }

    #[test]
    fn edges_of_the_range() {
        // 2^64 + 13 is the smallest prime above 2^64; 2^128 - 159 the largest below 2^128.
        for n in [
            1u128 << 64,
            (1 << 64) + 1,
            (1 << 64) + 13,
            (1 << 127) - 1,
            (1 << 127) + 1,
            u128::MAX,
            u128::MAX - 158,
            u128::MAX - 160,
        ] {
            assert_eq!(is_prime_u128(n), gmp(n), "n = {n}");
        }
        assert!(is_prime_u128((1 << 64) + 13));
        assert!(is_prime_u128(u128::MAX - 158));
        assert!(is_prime_u128((1 << 127) - 1));
        // n + 1 = 2^127: d = 1, the ladder has no bits (found by fuzzing:
        // the shift by s + 1 = 128 overflowed).
        let m = Mont::for_modulus((1 << 127) - 1);
        assert!(m.strong_lucas());
    }

    #[test]
    fn random_numbers_agree_with_gmp() {
        let mut state = 0x128;
        let mut primes = 0;
        for i in 0..60_000u32 {
            // Every bit length from 65 to 128.
            let n = draw_u128(&mut state) >> (i % 64) | 1 << 64;
            let want = gmp(n);
            primes += u32::from(want);
            assert_eq!(is_prime_u128(n), want, "n = {n}");
        }
        assert!(primes > 300, "{primes} primes drawn");
    }

    #[test]
    fn semiprimes_squares_and_primes_agree_with_gmp() {
        let mut state = 0xfac7;
        for i in 0..3000u32 {
            // Two primes of 33 to 64 bits, their product above 2^64.
            let bits = 33 + i % 32;
            let p =
                Integer::from(splitmix(&mut state) >> (64 - bits) | 1 << (bits - 1)).next_prime();
            let q =
                Integer::from(splitmix(&mut state) >> (64 - bits) | 1 << (bits - 1)).next_prime();
            let (p, q) = (p.to_u128().unwrap(), q.to_u128().unwrap());
            if let Some(n) = p.checked_mul(q).filter(|&n| n >> 64 != 0) {
                assert!(!is_prime_u128(n), "{p} * {q}");
            }
            if let Some(n) = p.checked_mul(p).filter(|&n| n >> 64 != 0) {
                assert!(!is_prime_u128(n), "{p}^2");
            }
            // A prime above 2^64 and its neighbours.
            let big = (Integer::from(draw_u128(&mut state) >> (i % 63))
                | (Integer::from(1) << 64u32))
                .next_prime();
            if let Some(r) = big.to_u128() {
                assert!(is_prime_u128(r), "{r}");
                assert_eq!(is_prime_u128(r + 2), gmp(r + 2), "{}", r + 2);
            }
        }
    }

    #[test]
    fn base_2_pseudoprimes_above_2_64_need_the_lucas_test() {
        // n = p (2p - 1) with both factors prime and 2p - 1 = +-1 (mod 8)
        // is a Fermat pseudoprime to base 2; the strong ones pass the
        // base-2 test, so only the Lucas test can reject them.
        let mut state = 0x5b5b;
        let mut strong = 0;
        let mut tried = 0;
        while strong < 10 {
            let bits = 33 + splitmix(&mut state) % 30;
            let mut p = Integer::from(splitmix(&mut state) >> (64 - bits) | 1 << (bits - 1));
            loop {
                p.next_prime_mut();
                let q = Integer::from(&p * 2u32) - 1u32;
                if matches!(q.mod_u(8), 1 | 7) && q.is_probably_prime(24) != IsPrime::No {
                    break;
                }
            }
            let p = p.to_u128().unwrap();
            let n = p * (2 * p - 1);
            tried += 1;
            let m = Mont::for_modulus(n);
            if m.strong_base_2() {
                strong += 1;
                assert!(!m.strong_lucas(), "{p} * {}", 2 * p - 1);
                assert!(!is_prime_u128(n));
            }
            assert!(
                tried < 5000,
                "only {strong} strong pseudoprimes in {tried} tries"
            );
        }
        // Composite Mersenne numbers are strong pseudoprimes to base 2 and
        // their factors are above their bit length.
        for e in [67, 71, 73, 79, 83, 97, 101, 103, 109, 113] {
            let n = (1u128 << e) - 1;
            let m = Mont::for_modulus(n);
            assert!(m.strong_base_2(), "2^{e} - 1");
            assert!(!m.strong_lucas(), "2^{e} - 1");
            assert!(!is_prime_u128(n), "2^{e} - 1");
        }
    }

    #[test]
    fn known_pseudoprimes_above_2_64() {
        // Strong pseudoprimes to the first 12 and 13 prime bases (A014233).
        for n in [
            318_665_857_834_031_151_167_461u128,
            3_317_044_064_679_887_385_961_981,
        ] {
            let m = Mont::for_modulus(n);
            assert!(m.strong_base_2(), "{n} is a base-2 strong pseudoprime");
            assert!(!m.strong_lucas(), "{n} fails the strong Lucas test");
            assert!(!is_prime_u128(n));
        }
    }

    #[test]
    fn strong_lucas_alone_on_lucas_pseudoprimes() {
        // Products of twin-like primes p, p + 2 pass many Lucas tests;
        // and strong Lucas pseudoprimes (A217255) times nothing are small,
        // so check the Lucas half against GMP's on primes and composites
        // that pass base 2.
        let mut state = 0x1ca5;
        let mut checked = 0;
        while checked < 2000 {
            let n = draw_u128(&mut state) >> (splitmix(&mut state) % 63) | 1 << 64 | 1;
            if n.is_multiple_of(3) || n.is_multiple_of(5) || n.is_multiple_of(7) {
                continue;
            }
            let m = Mont::for_modulus(n);
            let big = Integer::from(n);
            // For primes the test must pass; for composites GMP's BPSW
            // would say composite, and the Lucas half must too unless
            // base 2 already failed.
            let want_prime = gmp(n);
            if want_prime {
                assert!(m.strong_lucas(), "{n} prime");
                assert!(m.strong_base_2(), "{n} prime");
            } else if !big.is_perfect_square() {
                assert!(!(m.strong_base_2() && m.strong_lucas()), "{n}");
            }
            checked += 1;
        }
    }
}
