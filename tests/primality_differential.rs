//! Our Baillie-PSW (src/prime/wide.rs below 2^128, src/prime/bpsw.rs
//! above) against GMP's `mpz_probab_prime_p`, the test the service ran
//! before: every answer must be the same.
//!
//! `make test` runs this file in an optimised build (`cargo test --release
//! --test primality_differential`): 10^6 numbers below 2^128 and 10^5 from
//! 129 to 1,000 bits, about a minute on two cores. In a debug build (plain
//! `cargo test`) the same draws run at a hundredth of the count. `make
//! differential-long` adds the ignored test: every bit length up to 14,300.
//!
//! Draws come from a seeded splitmix64 generator; the seed is printed, and
//! `PRIME_DIFF_SEED=<n>` replays a run. `PRIME_DIFF_SCALE=<x>` multiplies
//! the counts.
//!
//! Families: random odd numbers of every bit length, primes, products of
//! two primes of equal size, perfect squares, numbers with a small factor
//! (below and above the trial-division bound), Carmichael numbers
//! (Chernick's (6k+1)(12k+1)(18k+1)), strong pseudoprimes to base 2
//! (A014233's, composite Mersenne numbers, and p(2p-1) with 2p-1 = +-1 mod
//! 8), strong Lucas pseudoprimes (A217255).

use prime_server::prime::is_prime_integer;
use prime_server::prime::is_prime_u128;
use prime_server::prime::parse_int;
use prime_server::prime::{is_prime, is_prime_big};
use rug::integer::Order;
use rug::Integer;

/// splitmix64: small, seedable, reproducible.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A random number of exactly `bits` bits (bits >= 1).
    fn bits(&mut self, bits: u32) -> Integer {
        let limbs: Vec<u64> = (0..bits.div_ceil(64)).map(|_| self.next()).collect();
        let mut n = Integer::from_digits(&limbs, Order::Lsf);
        n.keep_bits_mut(bits);
        n.set_bit(bits - 1, true);
        n
    }
}

/// The run's seed: `PRIME_DIFF_SEED` or a fixed default, printed so a
/// failure can be replayed.
fn seed(test: &str) -> u64 {
    let seed = std::env::var("PRIME_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x2021_b5e5);
    println!("{test}: PRIME_DIFF_SEED={seed}");
    seed
}

/// How many draws: `full` in an optimised build, a hundredth in a debug
/// one, times `PRIME_DIFF_SCALE`.
fn count(full: u64) -> u64 {
    let scale: f64 = std::env::var("PRIME_DIFF_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let base = if cfg!(debug_assertions) {
        full / 100
    } else {
        full
    };
    ((base as f64 * scale) as u64).max(1)
}

/// Primes by bit length, drawn once and reused: GMP's next_prime costs
/// milliseconds at hundreds of bits, far more than the tests it feeds.
struct Pool {
    /// How many primes each bit length keeps.
    per_size: usize,
    /// The primes found so far, by bit length.
    primes: std::sync::Mutex<std::collections::HashMap<u32, Vec<Integer>>>,
}

impl Pool {
    fn new(per_size: usize) -> Self {
        Pool {
            per_size,
            primes: std::sync::Mutex::new(std::collections::HashMap::new()),
        }
    }

    /// A prime of `bits` bits (at least 2): a new one while the pool for
    /// that size is not full, then one of those.
    fn prime(&self, rng: &mut Rng, bits: u32) -> Integer {
        let bits = bits.max(2);
        let pick = rng.below(self.per_size as u64) as usize;
        let known = self
            .primes
            .lock()
            .expect("pool lock")
            .get(&bits)
            .map_or(0, Vec::len);
        if known <= pick {
            let p = loop {
                let p = rng.bits(bits).next_prime();
                if p.significant_bits() == bits {
                    break p;
                }
            };
            self.primes
                .lock()
                .expect("pool lock")
                .entry(bits)
                .or_default()
                .push(p.clone());
            return p;
        }
        self.primes.lock().expect("pool lock")[&bits][pick].clone()
    }
}

/// One draw of the families, of `bits` bits (roughly, for products).
fn draw(rng: &mut Rng, pool: &Pool, bits: u32) -> Integer {
    let half = (bits / 2).max(2);
    match rng.below(20) {
        // Random odd numbers: most are rejected by trial division or base 2.
        0..=7 => rng.bits(bits) | 1u32,
        // Primes, and their odd neighbours.
        8..=9 => pool.prime(rng, bits),
        10 => pool.prime(rng, bits) + 2u32,
        // Products of two primes of the same size (no small factor).
        11..=12 => pool.prime(rng, half) * pool.prime(rng, half),
        // Perfect squares of primes and of odd numbers.
        13 => pool.prime(rng, half).square(),
        14 => (rng.bits(half) | 1u32).square(),
        // A small prime factor, some below the bit length (GMP's trial
        // division) and some above it.
        15..=16 => {
            let width = rng.below(14) + 2;
            let p = Integer::from(rng.below(1 << width) | 1).next_prime();
            let cofactor_bits = bits.saturating_sub(p.significant_bits()).max(2);
            p * pool.prime(rng, cofactor_bits)
        }
        // Three primes of equal size.
        17 => {
            let third = (bits / 3).max(2);
            rng.bits(third).next_prime()
                * rng.bits(third).next_prime()
                * rng.bits(third).next_prime()
        }
        // A prime times the next prime (close factors).
        18 => {
            let p = pool.prime(rng, half);
            let q = Integer::from(&p + 1u32).next_prime();
            p * q
        }
        // 2^k +- small.
        _ => (Integer::from(1) << (bits - 1)) + (rng.below(2000) as i64 - 1000),
    }
}

/// Checks one number: our answer through the path the service takes for
/// it, and (when `via_parse`) through the parser too, against GMP's;
/// returns GMP's.
fn check(n: &Integer, via_parse: bool) -> bool {
    let want = is_prime_big(n);
    let got = match n.to_u128() {
        Some(small) => is_prime_u128(small),
        None => is_prime_integer(n),
    };
    assert_eq!(got, want, "n = {n}");
    if via_parse {
        let parsed = parse_int(n.to_string().as_bytes()).expect("decimal parses");
        assert_eq!(is_prime(&parsed), want, "n = {n} through the parser");
    }
    want
}

/// Runs `total` draws on two threads (the machine has two cores), each
/// thread with its own generator split from `seed`.
fn run(seed: u64, total: u64, pool: &Pool, bits_of: impl Fn(&mut Rng) -> u32 + Sync) -> (u64, u64) {
    let results: Vec<(u64, u64)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..2u64)
            .map(|t| {
                let bits_of = &bits_of;
                scope.spawn(move || {
                    let mut rng = Rng(seed ^ (t + 1).wrapping_mul(0xa076_1d64_78bd_642f));
                    let (mut primes, mut done) = (0, 0);
                    for i in (t..total).step_by(2) {
                        let bits = bits_of(&mut rng);
                        let n = draw(&mut rng, pool, bits);
                        primes += u64::from(check(&n, i % 64 == 0));
                        done += 1;
                    }
                    (primes, done)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a worker thread panicked"))
            .collect()
    });
    results
        .iter()
        .fold((0, 0), |(p, d), (p1, d1)| (p + p1, d + d1))
}

#[test]
fn a_million_numbers_below_2_128_agree_with_gmp() {
    let seed = seed("below_2_128");
    let total = count(1_000_000);
    let (primes, done) = run(seed, total, &Pool::new(200), |rng| {
        65 + rng.below(64) as u32
    });
    println!("below 2^128: {done} numbers, {primes} primes");
    assert_eq!(done, total);
    assert!(
        primes > total / 20,
        "{primes} primes in {total}: the draws lost their primes"
    );
}

#[test]
fn numbers_up_to_1000_bits_agree_with_gmp() {
    let seed = seed("up_to_1000_bits");
    let total = count(100_000);
    let (primes, done) = run(seed, total, &Pool::new(3), |rng| {
        129 + rng.below(872) as u32
    });
    println!("129 to 1000 bits: {done} numbers, {primes} primes");
    assert_eq!(done, total);
    assert!(primes > total / 20, "{primes} primes in {total}");
}

/// Chernick's Carmichael numbers (6k+1)(12k+1)(18k+1), all three prime,
/// with k from `start` up: `count` of them.
fn chernick(start: u64, count: usize) -> Vec<Integer> {
    let mut found = Vec::new();
    let mut k = start;
    while found.len() < count {
        let factors = [6 * k + 1, 12 * k + 1, 18 * k + 1].map(Integer::from);
        if factors.iter().all(is_prime_big) {
            found.push(factors.iter().product());
        }
        k += 1;
    }
    found
}

#[test]
fn pseudoprimes_and_carmichael_numbers_agree_with_gmp() {
    let seed = seed("pseudoprimes");
    let mut rng = Rng(seed);
    let mut numbers: Vec<Integer> = Vec::new();
    // Strong pseudoprimes to the first prime bases (A014233) and to base 2.
    for n in [
        "2047",
        "3215031751",
        "3825123056546413051",
        "318665857834031151167461",
        "3317044064679887385961981",
    ] {
        numbers.push(n.parse().expect("a number"));
    }
    // Strong Lucas pseudoprimes (A217255).
    for n in [
        5459u64, 5777, 10877, 16109, 18971, 22499, 24569, 25199, 40309, 58519, 75077, 97439,
        100_127, 113_573, 115_639, 130_139,
    ] {
        numbers.push(Integer::from(n));
    }
    // Carmichael numbers of 60 to 190 bits.
    for shift in [17u32, 25, 33, 41, 49, 57] {
        numbers.extend(chernick((1 << shift) + rng.below(1 << 16), 3));
    }
    // Composite Mersenne numbers: strong pseudoprimes to base 2.
    for e in [67u32, 71, 101, 131, 211, 1009, 2003] {
        numbers.push((Integer::from(1) << e) - 1u32);
    }
    // p (2p - 1), both prime, 2p - 1 = +-1 (mod 8): Fermat pseudoprimes to
    // base 2, often strong ones, up to 400 bits.
    let mut strong = 0;
    for i in 0..count(1000) {
        let mut p = rng.bits(33 + (i % 200) as u32);
        let q = loop {
            p.next_prime_mut();
            let q = Integer::from(&p * 2u32) - 1u32;
            if matches!(q.mod_u(8), 1 | 7) && is_prime_big(&q) {
                break q;
            }
        };
        let n = Integer::from(&p * &q);
        let minus_one = Integer::from(&n - 1u32);
        let s = minus_one.find_one(0).expect("n > 1");
        let mut x = Integer::from(2)
            .pow_mod(&(Integer::from(&minus_one >> s)), &n)
            .expect("n > 0");
        let mut passes = x == 1 || x == minus_one;
        for _ in 1..s {
            x.square_mut();
            x %= &n;
            passes |= x == minus_one;
        }
        strong += u32::from(passes);
        numbers.push(n);
    }
    println!(
        "pseudoprimes: {} numbers, {strong} strong base-2 pseudoprimes among the p(2p-1)",
        numbers.len()
    );
    assert!(
        strong > 0 || cfg!(debug_assertions),
        "no strong pseudoprime drawn"
    );
    for n in &numbers {
        assert!(!check(n, true), "{n} is composite");
    }
}

/// Every bit length from 65 to 14,300: random odd numbers at each, primes,
/// semiprimes and squares at every 16th (next_prime at 14,000 bits takes
/// minutes, so primes get sparser above 4,096 bits). Not in CI: about 16
/// minutes on two cores (978 s measured).
#[test]
#[ignore = "long: make differential-long"]
fn every_size_up_to_14300_bits() {
    let seed = seed("every_size");
    let sizes: Vec<u32> = (65..=14_300).collect();
    std::thread::scope(|scope| {
        for t in 0..2u64 {
            let sizes = &sizes;
            scope.spawn(move || {
                let mut rng = Rng(seed ^ (t + 1).wrapping_mul(0xa076_1d64_78bd_642f));
                for (i, &bits) in sizes.iter().enumerate().skip(t as usize).step_by(2) {
                    for _ in 0..2 {
                        let _ = check(&(rng.bits(bits) | 1u32), false);
                    }
                    let every = if bits <= 4096 { 16 } else { 1024 };
                    if i % every == 0 {
                        check(&rng.bits(bits).next_prime(), true);
                        let half = bits / 2;
                        check(
                            &(rng.bits(half).next_prime() * rng.bits(half).next_prime()),
                            false,
                        );
                        check(&rng.bits(half).next_prime().square(), false);
                        println!("{bits} bits done");
                    }
                }
            });
        }
    });
}
