//! Small-number helpers shared by the 128-bit ([`super::wide`]) and the
//! multi-limb ([`super::bpsw`]) Baillie-PSW tests: the trial-division
//! table, the Jacobi symbol of word-sized numbers, Selfridge's search for
//! the Lucas parameters, and inverses modulo a small number.
//!
//! Both tests mirror GMP's `mpz_probab_prime_p` (6.3) step for step where
//! a step can change an answer: trial division by every odd prime below
//! the bit length of n, then a strong base-2 test, then a strong Lucas
//! test with Selfridge's method A parameters.

use std::sync::LazyLock;

/// Largest bit length for which trial division follows GMP's rule exactly
/// (every odd prime below the bit length); larger numbers are divided by
/// the whole table. The service's numbers (4300 digits, 14,284 bits) stay
/// below it.
pub const TRIAL_LIMIT: usize = 16_384;

/// The odd primes below [`TRIAL_LIMIT`], ascending: the trial divisors.
/// (Built at first use, in microseconds, rather than in a `const`: a
/// mutated `const fn` sieve would hang the compiler, not fail a test.)
pub static ODD_PRIMES: LazyLock<Vec<u64>> = LazyLock::new(odd_primes_below_limit);

/// Consecutive primes of [`ODD_PRIMES`] whose product fits one 64-bit word,
/// as (product, index of the first prime, index past the last): one
/// remainder of n by the product gives n's remainder by each prime, as
/// GMP's trial division does.
pub static PRIME_GROUPS: LazyLock<Vec<(u64, usize, usize)>> =
    LazyLock::new(|| group_primes(&ODD_PRIMES));

/// Sieve of Eratosthenes: the odd primes below [`TRIAL_LIMIT`].
fn odd_primes_below_limit() -> Vec<u64> {
    let mut composite = vec![false; TRIAL_LIMIT];
    let mut primes = Vec::new();
    for i in (3..TRIAL_LIMIT).step_by(2) {
        if composite[i] {
            continue;
        }
        primes.push(i as u64);
        for j in (i * i..TRIAL_LIMIT).step_by(2 * i) {
            composite[j] = true;
        }
    }
    primes
}

/// Packs `primes` into maximal runs whose product fits a word.
fn group_primes(primes: &[u64]) -> Vec<(u64, usize, usize)> {
    let mut groups = Vec::new();
    let mut start = 0;
    while start < primes.len() {
        let mut product = primes[start];
        let mut end = start + 1;
        while let Some(p) = primes.get(end).and_then(|&q| product.checked_mul(q)) {
            product = p;
            end += 1;
        }
        groups.push((product, start, end));
        start = end;
    }
    groups
}

/// Whether an odd prime below `bits` divides n, given `remainder(product)`
/// = n mod product for each group's product: GMP's trial division, which
/// for n >= 2^64 tries exactly the odd primes below n's bit length.
pub fn has_small_factor(bits: u64, mut remainder: impl FnMut(u64) -> u64) -> bool {
    for &(product, start, end) in PRIME_GROUPS.iter() {
        if ODD_PRIMES[start] >= bits {
            break;
        }
        let r = remainder(product);
        for &p in &ODD_PRIMES[start..end] {
            if p >= bits {
                break;
            }
            if r.is_multiple_of(p) {
                return true;
            }
        }
    }
    false
}

/// The Jacobi symbol (a/m) for odd m: -1, 0 or 1.
pub fn jacobi(mut a: u64, mut m: u64) -> i32 {
    debug_assert!(m % 2 == 1);
    a %= m;
    let mut result = 1;
    while a != 0 {
        let twos = a.trailing_zeros();
        a >>= twos;
        // (2/m) = -1 exactly when m = 3 or 5 (mod 8).
        if twos % 2 == 1 && (m % 8 == 3 || m % 8 == 5) {
            result = -result;
        }
        // Quadratic reciprocity: the sign flips when both are 3 mod 4.
        if a % 4 == 3 && m % 4 == 3 {
            result = -result;
        }
        (a, m) = (m % a, a);
    }
    if m == 1 {
        result
    } else {
        0
    }
}

/// Selfridge's method A found its parameters, or proved n composite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selfridge {
    /// The first D of 5, -7, 9, -11, ... with (D/n) = -1; P = 1 and
    /// Q = (1 - D) / 4 is given.
    Found {
        /// Q = (1 - D) / 4: its absolute value, small and coprime to n.
        q_abs: u64,
        /// Whether Q is negative (D = 1 mod 4 positive, 5, 9, 13, ...).
        q_negative: bool,
    },
    /// A D shares a factor with n (a proper one, as n > |D|), or n is a
    /// perfect square (no D can work): composite, as GMP answers.
    Composite,
}

/// Selfridge's method A for an odd n above 2^64 with no factor 3: `mod_small(m)`
/// is n mod m, `is_square()` whether n is a perfect square.
///
/// For each candidate D (|D| = 1 mod 4 positive, else negative), the
/// Jacobi symbol (D/n) equals (n/|D|), so only n mod |D| is needed. GMP
/// checks for squares once 5 to 17 have failed; a square can never give -1,
/// so where the check stands changes no answer, only how long a square
/// takes. The search has no upper bound: for a non-square the first D with
/// (D/n) = -1 (or a shared factor, giving 0) comes long before GMP's
/// bound of sqrt(n) (at least 2^32 here).
pub fn selfridge(
    mut mod_small: impl FnMut(u64) -> u64,
    is_square: impl FnOnce() -> bool,
) -> Selfridge {
    let mut is_square = Some(is_square);
    let mut d: u64 = 5;
    loop {
        if d == 19 && is_square.take().is_some_and(|f| f()) {
            return Selfridge::Composite;
        }
        match jacobi(mod_small(d), d) {
            -1 => {
                // D = d if d = 1 (mod 4), else -d; Q = (1 - D) / 4.
                return if d % 4 == 1 {
                    Selfridge::Found {
                        q_abs: d / 4,
                        q_negative: true,
                    }
                } else {
                    Selfridge::Found {
                        q_abs: d / 4 + 1,
                        q_negative: false,
                    }
                };
            }
            0 => return Selfridge::Composite,
            _ => d += 2,
        }
    }
}

/// a^-1 mod m, for a coprime to m > 1 (and 0 when m = 1).
pub fn inverse_mod(a: u64, m: u64) -> u64 {
    let (mut r0, mut r1) = (i128::from(m), i128::from(a % m));
    let (mut t0, mut t1) = (0i128, 1i128);
    while r1 != 0 {
        let q = r0 / r1;
        (r0, r1) = (r1, r0 - q * r1);
        (t0, t1) = (t1, t0 - q * t1);
    }
    debug_assert!(r0 == 1 || m == 1, "{a} is not invertible mod {m}");
    // |t0| < m: its representative in [0, m) fits a u64.
    t0.rem_euclid(i128::from(m)) as u64
}

/// The k in [0, q) with x + k n divisible by q, given x mod q (below q)
/// and n mod q (n coprime to q): dividing x + k n by q then gives x / q mod
/// n, which is how both tests get R / Q mod n without a general division.
pub fn exact_multiplier(x_mod_q: u64, n_mod_q: u64, q: u64) -> u64 {
    debug_assert!(x_mod_q < q);
    let k = u128::from(q - x_mod_q) * u128::from(inverse_mod(n_mod_q, q));
    (k % u128::from(q)) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rug::Integer;

    #[test]
    fn odd_primes_are_the_odd_primes_below_the_limit() {
        assert_eq!(ODD_PRIMES[..8], [3, 5, 7, 11, 13, 17, 19, 23]);
        assert_eq!(ODD_PRIMES.len(), 1899); // pi(16384) - 1
        assert_eq!(*ODD_PRIMES.last().unwrap(), 16_381);
        for &p in ODD_PRIMES.iter() {
            assert!(Integer::from(p).is_probably_prime(30) != rug::integer::IsPrime::No);
        }
    }

    #[test]
    fn groups_cover_every_prime_once_and_fit_a_word() {
        let mut next = 0;
        for &(product, start, end) in PRIME_GROUPS.iter() {
            assert_eq!(start, next);
            assert!(end > start);
            let exact: Integer = ODD_PRIMES[start..end]
                .iter()
                .map(|&p| Integer::from(p))
                .product();
            assert_eq!(exact, product);
            // Maximal: the next prime would overflow.
            if end < ODD_PRIMES.len() {
                assert!(exact * ODD_PRIMES[end] > u64::MAX);
            }
            next = end;
        }
        assert_eq!(next, ODD_PRIMES.len());
        // GMP's first product: 3 x 5 x ... x 53.
        assert_eq!(PRIME_GROUPS[0].0, 0xE221_F97C_30E9_4E1D);
    }

    #[test]
    fn small_factors_below_the_bit_length_only() {
        let rem = |n: u128| move |m: u64| (n % u128::from(m)) as u64;
        // 61 times an odd number with no small factor checked here.
        let cofactor = Integer::from(Integer::u_pow_u(2, 70))
            .next_prime()
            .to_u128()
            .unwrap();
        let n: u128 = 61 * cofactor;
        assert!(has_small_factor(72, rem(n)));
        assert!(!has_small_factor(61, rem(n)), "61 is not below 61");
        assert!(has_small_factor(62, rem(n)));
        let m: u128 = 3 * Integer::from(Integer::u_pow_u(2, 100))
            .next_prime()
            .to_u128()
            .unwrap();
        assert!(has_small_factor(102, rem(m)));
        // 2^64 + 13 is prime: nothing divides it.
        assert!(!has_small_factor(65, rem((1u128 << 64) + 13)));
        // A factor in a later group: 16381 (the last prime) and 1009.
        let big = Integer::from(16_381u64) * (Integer::from(1) << 200u32).next_prime();
        let rem_big = |m: u64| (&big % Integer::from(m)).to_u64().unwrap();
        assert!(has_small_factor(20_001, rem_big));
        assert!(!has_small_factor(16_381, rem_big));
        let n1009 = Integer::from(1009u32) * (Integer::from(1) << 200u32).next_prime();
        let rem_1009 = |m: u64| (&n1009 % Integer::from(m)).to_u64().unwrap();
        assert!(has_small_factor(1010, rem_1009));
        assert!(!has_small_factor(1009, rem_1009));
    }

    #[test]
    fn jacobi_matches_gmp() {
        for m in (1u64..200).step_by(2) {
            for a in 0..250 {
                let want = Integer::from(a).jacobi(&Integer::from(m));
                assert_eq!(jacobi(a, m), want, "({a}/{m})");
            }
        }
        let m = 18_446_744_073_709_551_557u64;
        for a in [2u64, 3, 5, 1 << 40, u64::MAX - 1, m - 1] {
            assert_eq!(
                jacobi(a, m),
                Integer::from(a).jacobi(&Integer::from(m)),
                "({a}/{m})"
            );
        }
    }

    /// The Selfridge D for n, straight from the definition with GMP's
    /// Jacobi symbol: the reference the search must agree with.
    fn reference_d(n: &Integer) -> Option<i64> {
        let mut d: i64 = 5;
        loop {
            match Integer::from(d).jacobi(n) {
                -1 => return Some(d),
                0 => return None,
                _ => d = if d > 0 { -(d + 2) } else { -d + 2 },
            }
        }
    }

    #[test]
    fn selfridge_matches_the_definition() {
        let mut state = 0x5e1f_u64;
        let mut next = || {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut seen_q = std::collections::BTreeSet::new();
        for _ in 0..20_000 {
            let n = (u128::from(next()) << 64 | u128::from(next())) | 1;
            if n % 3 == 0 {
                continue;
            }
            let big = Integer::from(n);
            let got = selfridge(|m| (n % u128::from(m)) as u64, || big.is_perfect_square());
            match (got, reference_d(&big)) {
                (Selfridge::Found { q_abs, q_negative }, Some(d)) => {
                    let q = (1 - d) / 4;
                    assert_eq!(q.unsigned_abs(), q_abs, "n = {n}");
                    assert_eq!(q < 0, q_negative, "n = {n}");
                    seen_q.insert(q);
                }
                (Selfridge::Composite, None) => {}
                (got, want) => panic!("n = {n}: {got:?} against D = {want:?}"),
            }
        }
        // Both signs and several sizes of Q were drawn.
        for q in [-1, 2, 3, -3, 4, -4, 5] {
            assert!(seen_q.contains(&q), "Q = {q} never drawn");
        }
    }

    #[test]
    fn selfridge_rejects_squares_and_shared_factors() {
        for root in [
            4_294_967_311u128,
            18_446_744_073_709_551_557,
            (1 << 62) + 135,
        ] {
            let n = root * root;
            let big = Integer::from(n);
            assert_eq!(
                selfridge(|m| (n % u128::from(m)) as u64, || big.is_perfect_square()),
                Selfridge::Composite,
                "{root}^2"
            );
        }
        // 5 divides n: (5/n) = 0 at once.
        let n: u128 = 5 * ((1 << 80) + 1);
        assert_eq!(
            selfridge(|m| (n % u128::from(m)) as u64, || false),
            Selfridge::Composite
        );
        // The square check runs only once 5..17 all gave +1; a D found
        // first never asks.
        let n: u128 = (1 << 64) + 1; // n = 2 (mod 5), so (5/n) = -1
        let found = selfridge(|m| (n % u128::from(m)) as u64, || panic!("not asked"));
        assert_eq!(
            found,
            Selfridge::Found {
                q_abs: 1,
                q_negative: true
            }
        );
    }

    #[test]
    fn inverses_modulo_small_numbers() {
        for m in 2u64..300 {
            for a in 1..m {
                if Integer::from(a).gcd(&Integer::from(m)) == 1 {
                    assert_eq!(
                        u128::from(inverse_mod(a, m)) * u128::from(a) % u128::from(m),
                        1,
                        "{a} mod {m}"
                    );
                }
            }
        }
        assert_eq!(inverse_mod(5, 1), 0);
        assert_eq!(inverse_mod(u64::MAX, (1 << 61) - 1), {
            let m = (1u128 << 61) - 1;
            Integer::from(u64::MAX)
                .invert(&Integer::from(m))
                .unwrap()
                .to_u64()
                .unwrap()
        });
    }

    #[test]
    fn exact_multiplier_makes_a_multiple() {
        for q in 1u64..60 {
            for n in [1u64, 7, 1_000_003, u64::MAX] {
                if Integer::from(n).gcd(&Integer::from(q)) != 1 {
                    continue;
                }
                for x in [0u64, 1, 2, 12345, u64::MAX - 2] {
                    let k = exact_multiplier(x % q, n % q, q);
                    assert!(k < q);
                    let sum = Integer::from(x) + Integer::from(k) * n;
                    assert!(sum.is_divisible_u(q as u32), "x {x} n {n} q {q} k {k}");
                }
            }
        }
    }
}
