//! Primality: exact below 2^64, Baillie-PSW above.
//!
//! * Below 2^64, [`is_prime_u64`] runs trial division by the primes below 64
//!   and then a deterministic Miller-Rabin test in Montgomery form. Bases
//!   `{2, 3, 5, 7}` are proven for n < 3,215,031,751 (OEIS A014233) and Jim
//!   Sinclair's seven bases `{2, 325, 9375, 28178, 450775, 9780504,
//!   1795265022}` for every n < 2^64, so the answer is exact.
//! * Above, Baillie-PSW (a strong base-2 test plus a strong Lucas test with
//!   Selfridge's parameters), GMP's test with GMP's answers: below 2^128 in
//!   native 128-bit arithmetic ([`is_prime_u128`]), above on GMP's limbs
//!   ([`is_prime_integer`]), both faster than GMP's `mpz_probab_prime_p`, which
//!   [`is_prime_big`] still calls as the reference they are tested
//!   against. No counterexample to Baillie-PSW is known; it is the field's
//!   standard.
//!
//! [`is_prime`] picks the path for a [`ParsedInt`]; every value below 2
//! (zero, one and all negatives) is not prime.

mod bpsw;
mod small;
mod wide;

pub use bpsw::is_prime_integer;
pub use wide::is_prime_u128;

use crate::prime::parse::ParsedInt;
use rug::integer::IsPrime;
use rug::Integer;

/// Odd primes below 64, for trial division before Miller-Rabin.
const SMALL_ODD_PRIMES: [u64; 17] = [
    3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61,
];

/// Bit `p` is set when `p` is prime, for `p < 64`: 2 and [`SMALL_ODD_PRIMES`],
/// derived so the two can never disagree.
const SMALL_PRIME_MASK: u64 = prime_mask(&SMALL_ODD_PRIMES);

/// The mask with bit 2 and bit `p` for each `p` in `odd_primes` (each below 64).
const fn prime_mask(odd_primes: &[u64]) -> u64 {
    let mut mask = 1 << 2;
    let mut i = 0;
    while i < odd_primes.len() {
        mask |= 1 << odd_primes[i];
        i += 1;
    }
    mask
}

/// Smallest strong pseudoprime to bases 2, 3, 5 and 7 (OEIS A014233).
const FOUR_BASES_LIMIT: u64 = 3_215_031_751;

/// Miller-Rabin rounds handed to GMP: up to 24 it runs Baillie-PSW alone.
const GMP_REPS: u32 = 24;

/// Whether `n` is prime, for any integer the parser accepts.
pub fn is_prime(n: &ParsedInt) -> bool {
    if n.is_negative() {
        return false;
    }
    if let Some(small) = n.to_u64() {
        return is_prime_u64(small);
    }
    if let Some(wide) = n.to_u128() {
        return wide::is_prime_u128(wide);
    }
    // The parser only produces ASCII digits, so this cannot fail; a value it
    // could not read would be no prime of ours anyway.
    Integer::from_str_radix(n.magnitude_digits(), 10).is_ok_and(|big| bpsw::is_prime_integer(&big))
}

/// Whether testing `n` costs more than a request does (11 to 15 us of
/// server CPU), so it is worth rationing on the heavy lane.
///
/// Measured in-process (median of runs): a 64-bit prime takes 1.3 us,
/// primes up to 2^128 at most about 4 us (the native 128-bit path), but
/// from 129 bits on the multi-limb test takes 11 us and more (23 us at 150
/// bits, 65 us at 100 digits, up to about a second at 4300 digits). So the
/// line is at 128 bits, where the native path ends: every number that fits
/// a `u128` is answered on the worker.
pub fn is_heavy(n: &ParsedInt) -> bool {
    !n.is_negative() && n.to_u128().is_none()
}

/// Exact primality for a 64-bit integer.
pub fn is_prime_u64(n: u64) -> bool {
    if n < 64 {
        return SMALL_PRIME_MASK >> n & 1 == 1;
    }
    if n.is_multiple_of(2) {
        return false;
    }
    // n >= 64, so a divisor from this list is a proper divisor.
    if SMALL_ODD_PRIMES.iter().any(|&p| n.is_multiple_of(p)) {
        return false;
    }
    // No prime below 67 divides n, so below 67^2 it is prime. This only
    // skips Miller-Rabin, which would say the same (so cargo-mutants'
    // `67 + 67` and `67 / 67` here are equivalent mutants).
    if n < 67 * 67 {
        return true;
    }
    let m = Montgomery::for_modulus(n);
    if n < FOUR_BASES_LIMIT {
        [2, 3, 5, 7].iter().all(|&a| m.strong_probable_prime(a))
    } else {
        [2, 325, 9375, 28178, 450_775, 9_780_504, 1_795_265_022]
            .iter()
            .all(|&a| m.strong_probable_prime(a))
    }
}

/// Baillie-PSW through GMP (`mpz_probab_prime_p`); every `n < 2` is not
/// prime. The service no longer calls it: it is the reference that
/// [`is_prime_u128`] and [`is_prime_integer`] must agree with, in tests,
/// fuzzing and benches.
pub fn is_prime_big(n: &Integer) -> bool {
    // GMP tests |n|; the protocol calls every n < 2 not prime.
    if *n < 2 {
        return false;
    }
    n.is_probably_prime(GMP_REPS) != IsPrime::No
}

/// Arithmetic modulo an odd `n` in Montgomery form, with R = 2^64.
struct Montgomery {
    /// The odd modulus.
    n: u64,
    /// n^-1 mod 2^64, for the reduction step.
    n_inv: u64,
    /// R^2 mod n, to bring numbers into Montgomery form.
    r2: u64,
    /// R mod n: the number one in Montgomery form.
    one: u64,
}

impl Montgomery {
    /// Precomputes the constants for odd `n > 1`. (Not called `new`:
    /// cargo-mutants leaves functions of that name alone, and this
    /// arithmetic is worth mutating.)
    fn for_modulus(n: u64) -> Self {
        debug_assert!(n % 2 == 1 && n > 1);
        // Newton's iteration doubles the correct low bits each step; an odd
        // n is its own inverse modulo 8 (3 bits), so five steps give 96.
        let mut n_inv = n;
        for _ in 0..5 {
            n_inv = n_inv.wrapping_mul(2u64.wrapping_sub(n.wrapping_mul(n_inv)));
        }
        let modulus = u128::from(n);
        let one = ((1u128 << 64) % modulus) as u64;
        let r2 = ((u128::MAX % modulus + 1) % modulus) as u64;
        Montgomery { n, n_inv, r2, one }
    }

    /// t * R^-1 mod n, for t < n * R.
    fn reduce(&self, t: u128) -> u64 {
        let m = (t as u64).wrapping_mul(self.n_inv);
        let mn_high = ((u128::from(m) * u128::from(self.n)) >> 64) as u64;
        let t_high = (t >> 64) as u64;
        // t and m*n agree in their low 64 bits, so the difference is exact.
        let (diff, borrow) = t_high.overflowing_sub(mn_high);
        if borrow {
            diff.wrapping_add(self.n)
        } else {
            diff
        }
    }

    /// Product of two numbers in Montgomery form.
    fn mul(&self, a: u64, b: u64) -> u64 {
        self.reduce(u128::from(a) * u128::from(b))
    }

    /// `a` (any u64) in Montgomery form.
    fn to_form(&self, a: u64) -> u64 {
        self.mul(a % self.n, self.r2)
    }

    /// `base^exp` for a base in Montgomery form.
    fn pow(&self, mut base: u64, mut exp: u64) -> u64 {
        let mut acc = self.one;
        while exp > 0 {
            if exp & 1 == 1 {
                acc = self.mul(acc, base);
            }
            base = self.mul(base, base);
            exp >>= 1;
        }
        acc
    }

    /// The strong probable-prime test of n to base `a`; a base that is a
    /// multiple of n proves nothing and passes.
    fn strong_probable_prime(&self, a: u64) -> bool {
        if a.is_multiple_of(self.n) {
            return true;
        }
        let n_minus_1 = self.n - 1;
        let shift = n_minus_1.trailing_zeros();
        let odd = n_minus_1 >> shift;
        let minus_one = self.n - self.one;
        let mut x = self.pow(self.to_form(a), odd);
        if x == self.one || x == minus_one {
            return true;
        }
        for _ in 1..shift {
            x = self.mul(x, x);
            if x == minus_one {
                return true;
            }
            if x == self.one {
                return false;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prime::parse::parse_int;

    fn prime_str(s: &str) -> bool {
        is_prime(&parse_int(s.as_bytes()).expect("test input parses"))
    }

    fn pow2_minus_1(exp: u32) -> String {
        ((Integer::from(1) << exp) - 1u32).to_string()
    }

    /// Sieve of Eratosthenes: the reference for small n.
    fn sieve(limit: usize) -> Vec<bool> {
        let mut is_p = vec![true; limit];
        is_p[0] = false;
        is_p[1] = false;
        let mut i = 2;
        while i * i < limit {
            if is_p[i] {
                let mut j = i * i;
                while j < limit {
                    is_p[j] = false;
                    j += i;
                }
            }
            i += 1;
        }
        is_p
    }

    /// Plain trial division with u128 arithmetic: slow, obviously right.
    fn reference_is_prime(n: u64) -> bool {
        if n < 2 {
            return false;
        }
        if n.is_multiple_of(2) {
            return n == 2;
        }
        let mut d: u64 = 3;
        while u128::from(d) * u128::from(d) <= u128::from(n) {
            if n.is_multiple_of(d) {
                return false;
            }
            d += 2;
        }
        true
    }

    /// splitmix64: a deterministic generator, so failures reproduce.
    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    #[test]
    fn every_n_below_a_million_matches_the_sieve() {
        let reference = sieve(1_000_000);
        for (n, &want) in reference.iter().enumerate() {
            assert_eq!(is_prime_u64(n as u64), want, "n = {n}");
        }
    }

    #[test]
    fn random_u64_match_trial_division() {
        // Full trial division is too slow near 2^64, so draw from ranges it
        // can finish: up to 2^40 (about a million divisions at most).
        let mut state = 0x5eed;
        for _ in 0..2_000 {
            let n = splitmix(&mut state) >> 24;
            assert_eq!(is_prime_u64(n), reference_is_prime(n), "n = {n}");
        }
    }

    /// The first prime at or above `start`, by trial division (for `start`
    /// below 2^32, at most 2^15 divisions a candidate).
    fn next_prime_by_trial_division(start: u64) -> u64 {
        (start..)
            .find(|&n| reference_is_prime(n))
            .expect("a prime follows")
    }

    /// A random prime in [2^31.5, 2^32), so the product of two is in
    /// [2^63, 2^64); found by trial division, so known prime independently
    /// of the code under test.
    fn random_prime_near_2_32(state: &mut u64) -> u64 {
        const LOW: u64 = 3_037_000_500; // ceil(2^31.5)
        const SPAN: u64 = (1 << 32) - 400 - LOW; // prime gaps below 2^32 are < 400
        let p = next_prime_by_trial_division(LOW + splitmix(state) % SPAN);
        assert!(p < 1 << 32);
        p
    }

    #[test]
    fn semiprimes_near_2_64_are_composite() {
        // Products of two primes near 2^32 have no factor below 2^31, so
        // trial division passes them on and Miller-Rabin, in Montgomery form
        // with a modulus near 2^64, must find them composite: the hardest
        // composites for the 64-bit path, asserted on every draw.
        let mut state = 0x5eed;
        for _ in 0..200 {
            let p = random_prime_near_2_32(&mut state);
            let q = random_prime_near_2_32(&mut state);
            let n = p * q;
            assert!(n >= 1 << 63, "{p} * {q} is near 2^64");
            assert!(!is_prime_u64(n), "{p} * {q} = {n}");
            assert!(!is_prime_u64(p * p), "{p}^2");
            assert!(is_prime_u64(p), "{p}");
        }
    }

    #[test]
    fn primes_near_2_64_are_prime() {
        // Walk down from random points in the top 2^32 of the range to the
        // prime below each, checking every number on the way. The reference
        // is GMP's Baillie-PSW, exact below 2^64: every base-2 strong
        // pseudoprime below 2^64 has been enumerated (Feitsma and Galway)
        // and none passes the strong Lucas test.
        let reference = |n: u64| Integer::from(n).is_probably_prime(30) != IsPrime::No;
        let mut state = 0x0264;
        let mut primes = 0;
        for _ in 0..100 {
            let mut n = u64::MAX - splitmix(&mut state) % (1 << 32);
            loop {
                let prime = reference(n);
                assert_eq!(is_prime_u64(n), prime, "n = {n}");
                if prime {
                    primes += 1;
                    break;
                }
                n -= 1;
            }
        }
        assert_eq!(primes, 100);
        // The last numbers below 2^64, every one.
        for n in u64::MAX - 2000..=u64::MAX {
            assert_eq!(is_prime_u64(n), reference(n), "n = {n}");
        }
    }

    #[test]
    fn random_u64_agree_with_gmp() {
        let mut state = 42;
        for _ in 0..20_000 {
            let n = splitmix(&mut state);
            let gmp = Integer::from(n).is_probably_prime(30) != IsPrime::No;
            assert_eq!(is_prime_u64(n), gmp, "n = {n}");
        }
    }

    #[test]
    fn strong_pseudoprimes_to_many_bases_a014233() {
        // Each is the smallest strong pseudoprime to the first k prime bases.
        for n in [
            2047u64,
            1_373_653,
            25_326_001,
            3_215_031_751,
            2_152_302_898_747,
            3_474_749_660_383,
            341_550_071_728_321,
            3_825_123_056_546_413_051,
        ] {
            assert!(!is_prime_u64(n), "{n}");
        }
        // Beyond 2^64, only Baillie-PSW stands between it and a wrong answer.
        assert!(!prime_str("318665857834031151167461"));
        assert!(!prime_str("3317044064679887385961981"));
    }

    #[test]
    fn base_2_strong_pseudoprimes_a001262() {
        for n in [2047u64, 3277, 4033, 4681, 8321, 15841, 29341, 42799, 49141] {
            assert!(!is_prime_u64(n), "{n}");
        }
    }

    #[test]
    fn strong_lucas_pseudoprimes_a217255() {
        for n in [5459u64, 5777, 10877, 16109, 18971, 22499, 24569, 25199] {
            assert!(!is_prime_u64(n), "{n}");
            assert!(!is_prime_big(&Integer::from(n)), "{n}");
        }
    }

    #[test]
    fn carmichael_numbers() {
        for n in [561u64, 1105, 1729, 2465, 2821, 6601, 8911, 41041, 825_265] {
            assert!(!is_prime_u64(n), "{n}");
        }
    }

    #[test]
    fn perfect_squares_terminate_and_are_composite() {
        // A Lucas test searching for D with Jacobi(D/n) = -1 never finds one
        // for a square; it must answer, not hang.
        for root in [3u64, 7, 101, 65_521, 4_294_967_291] {
            assert!(!is_prime_u64(root * root), "{root}^2");
        }
        let big_root = Integer::from(18_446_744_073_709_551_557u64);
        let square = Integer::from(&big_root * &big_root);
        assert!(!is_prime_big(&square));
        let mersenne_square = Integer::from_str_radix(&pow2_minus_1(127), 10).unwrap();
        assert!(!is_prime_big(&(mersenne_square.clone() * mersenne_square)));
    }

    #[test]
    fn u64_edges() {
        assert!(is_prime_u64(18_446_744_073_709_551_557)); // largest u64 prime
        assert!(!is_prime_u64(u64::MAX));
        assert!(!is_prime_u64(18_446_744_073_709_551_556));
        assert!(is_prime_u64(4_294_967_291)); // largest u32 prime
        assert!(is_prime_u64(4_294_967_311)); // smallest prime above 2^32
        assert!(!is_prime_u64(0));
        assert!(!is_prime_u64(1));
        assert!(is_prime_u64(2));
        // The trial-division shortcut ends at 67^2.
        assert!(!is_prime_u64(67 * 67));
        assert!(is_prime_u64(4493));
    }

    #[test]
    fn just_above_u64() {
        // 2^64 + 13 is the smallest prime above 2^64.
        assert!(prime_str("18446744073709551629"));
        assert!(!prime_str("18446744073709551616"));
        assert!(!prime_str("18446744073709551617")); // 2^64 + 1 = 274177 * 67280421310721
        assert!(!prime_str("18446744073709551627"));
    }

    #[test]
    fn mersenne_primes_and_neighbours() {
        for exp in [61, 89, 107, 127, 521, 607, 4423] {
            assert!(prime_str(&pow2_minus_1(exp)), "2^{exp}-1");
        }
        // 2^4423-1 has 1332 digits; 2^67-1 and 2^4421-1 are composite.
        for exp in [67, 4421] {
            assert!(!prime_str(&pow2_minus_1(exp)), "2^{exp}-1");
        }
    }

    #[test]
    fn rsa_100_and_its_factors() {
        let rsa_100 = "1522605027922533360535618378132637429718068114961380688657908494580122963258952897654000350692006139";
        let p = "37975227936943673922808872755445627854565536638199";
        let q = "40094690950920881030683735292761468389214899724061";
        assert!(!prime_str(rsa_100));
        assert!(prime_str(p));
        assert!(prime_str(q));
        let product =
            Integer::from_str_radix(p, 10).unwrap() * Integer::from_str_radix(q, 10).unwrap();
        assert_eq!(product.to_string(), rsa_100);
    }

    #[test]
    fn below_two_is_never_prime() {
        for s in ["0", "-0", "1", "-1", "-2", "-3", "-5", "-17"] {
            assert!(!prime_str(s), "{s}");
        }
        let negative_mersenne = format!("-{}", pow2_minus_1(127));
        assert!(!prime_str(&negative_mersenne));
        assert!(!is_prime_big(&Integer::from(-7)));
    }

    #[test]
    fn big_path_is_exact_at_the_small_end_too() {
        // GMP's test takes any size; the `n < 2` guard must stop at 2.
        for (n, want) in [
            (-2, false),
            (0, false),
            (1, false),
            (2, true),
            (3, true),
            (4, false),
        ] {
            assert_eq!(is_prime_big(&Integer::from(n)), want, "{n}");
        }
    }

    #[test]
    fn montgomery_constants_are_exact() {
        // Checked against GMP, not through Miller-Rabin: a wrong R^2 mod n
        // only changes the bases tested, which primes pass anyway.
        let r = Integer::from(1) << 64;
        for n in [
            3u64,
            4493,
            3_215_031_751,
            (1 << 63) - 25,
            (1 << 63) + 1,
            18_446_744_073_709_551_557,
            u64::MAX,
        ] {
            let m = Montgomery::for_modulus(n);
            let big_n = Integer::from(n);
            assert_eq!(m.n, n);
            assert_eq!(n.wrapping_mul(m.n_inv), 1, "n * n_inv mod 2^64, n = {n}");
            assert_eq!(
                Integer::from(m.one),
                Integer::from(&r % &big_n),
                "R mod n, n = {n}"
            );
            let r2 = Integer::from(&r * &r) % &big_n;
            assert_eq!(Integer::from(m.r2), r2, "R^2 mod n, n = {n}");
        }
    }

    #[test]
    fn heavy_means_beyond_u128() {
        let heavy = |s: &str| is_heavy(&parse_int(s.as_bytes()).unwrap());
        assert!(!heavy("18446744073709551616"));
        assert!(!heavy("340282366920938463463374607431768211455"));
        assert!(heavy("340282366920938463463374607431768211456"));
        assert!(!heavy("-340282366920938463463374607431768211456"));
        assert!(!heavy("0"));
    }

    #[test]
    fn each_size_takes_its_path_with_the_same_answers() {
        // Around both boundaries (2^64 and 2^128) the dispatch must give
        // GMP's answer whichever path it takes.
        for base in [Integer::from(1) << 64u32, Integer::from(1) << 128u32] {
            for delta in -300i32..300 {
                let n = Integer::from(&base + delta);
                assert_eq!(prime_str(&n.to_string()), is_prime_big(&n), "{n}");
            }
        }
    }
}
