//! The cost curve of one request's work without the network: parse plus
//! classify at 10, 20, 100, 1000 and 4300 digits, beside GMP's own
//! `mpz_probab_prime_p` on the same number, so the overhead of our path
//! over GMP is visible. `make bench` runs it; `make test` compiles and runs
//! each case once.
//!
//! The `bpsw` group is the primality test alone, per size from 64 to
//! 14,284 bits (4300 digits): ours (the path the service takes for that
//! size), GMP's `is_probably_prime(24)` (Baillie-PSW, what the service ran
//! before), and one strong probable-prime test to base 2 done the way
//! gmpy2's `is_strong_prp(n, 2)` does it (`mpz_powm` of 2 to the odd part
//! of n - 1, then squarings): the yardstick the ratios use.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use prime_server::prime::{is_prime, is_prime_integer, is_prime_u128, is_prime_u64, parse_int};
use rug::integer::IsPrime;
use rug::Integer;
use std::hint::black_box;
use std::time::Duration;

/// A prime with `digits` digits: the next prime after 10^(digits-1), or the
/// shipped ones for the big sizes (finding those takes minutes).
fn prime_with_digits(digits: usize) -> String {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/bench/data");
    let shipped = match digits {
        1000 => Some(format!("{data}/prime-1000.txt")),
        4300 => Some(format!("{data}/prime-4300.txt")),
        _ => None,
    };
    if let Some(path) = shipped {
        return std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
            .trim()
            .to_owned();
    }
    let start = Integer::from(Integer::u_pow_u(
        10,
        u32::try_from(digits - 1).expect("small"),
    ));
    start.next_prime().to_string()
}

fn primality(c: &mut Criterion) {
    let mut group = c.benchmark_group("parse+classify");
    for digits in [10, 20, 100, 1000, 4300] {
        let line = prime_with_digits(digits);
        assert_eq!(line.len(), digits);
        if digits >= 1000 {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(if digits == 4300 { 20 } else { 5 }));
        }
        group.bench_with_input(
            BenchmarkId::new("prime-server", digits),
            &line,
            |b, line| {
                b.iter(|| {
                    let n = parse_int(black_box(line.as_bytes())).expect("a valid line");
                    assert!(is_prime(&n));
                });
            },
        );
        let value = Integer::from_str_radix(&line, 10).expect("digits");
        group.bench_with_input(
            BenchmarkId::new("gmp-direct", digits),
            &value,
            |b, value| {
                b.iter(|| assert_ne!(black_box(value).is_probably_prime(24), IsPrime::No));
            },
        );
    }
    group.finish();
}

/// Our test for `n`, by the path the service takes for its size.
fn ours(n: &Integer) -> bool {
    if let Some(small) = n.to_u64() {
        is_prime_u64(small)
    } else if let Some(wide) = n.to_u128() {
        is_prime_u128(wide)
    } else {
        is_prime_integer(n)
    }
}

/// One strong probable-prime test to base 2 through GMP, as gmpy2's
/// `is_strong_prp(n, 2)`: 2^d mod n for n - 1 = d 2^s, then up to s - 1
/// squarings looking for -1.
fn gmp_strong_base_2(n: &Integer) -> bool {
    let minus_one = Integer::from(n - 1u32);
    let s = minus_one.find_one(0).expect("n > 1");
    let d = Integer::from(&minus_one >> s);
    let mut x = Integer::from(2).pow_mod(&d, n).expect("n > 0");
    if x == 1 || x == minus_one {
        return true;
    }
    for _ in 1..s {
        x.square_mut();
        x %= n;
        if x == minus_one {
            return true;
        }
    }
    false
}

/// Primes from 64 to 14,284 bits: the next prime after 3 * 2^(bits-2)
/// up to 1024 bits, then Mersenne primes and the shipped 1000- and
/// 4300-digit primes (searching at those sizes takes minutes).
fn curve_primes() -> Vec<Integer> {
    let mut primes: Vec<Integer> = [64u32, 96, 127, 160, 256, 332, 512, 768, 997, 1024]
        .into_iter()
        .map(|bits| ((Integer::from(3) << (bits - 2)) + 1u32).next_prime())
        .collect();
    for (digits, exponent) in [(1000, 2203u32), (4300, 4423), (0, 9689)] {
        primes.push((Integer::from(1) << exponent) - 1u32);
        if digits > 0 {
            primes.push(Integer::from_str_radix(&prime_with_digits(digits), 10).expect("digits"));
        }
    }
    primes.sort();
    primes
}

/// Ours, GMP's Baillie-PSW and one base-2 strong test, by size in bits.
fn bpsw_curve(c: &mut Criterion) {
    let mut group = c.benchmark_group("bpsw");
    for n in curve_primes() {
        let bits = n.significant_bits();
        if bits >= 2000 {
            group.sample_size(10);
            group.measurement_time(Duration::from_secs(if bits > 5000 { 20 } else { 5 }));
        }
        group.bench_with_input(BenchmarkId::new("ours", bits), &n, |b, n| {
            b.iter(|| assert!(ours(black_box(n))));
        });
        group.bench_with_input(BenchmarkId::new("gmp-bpsw", bits), &n, |b, n| {
            b.iter(|| assert_ne!(black_box(n).is_probably_prime(24), IsPrime::No));
        });
        group.bench_with_input(BenchmarkId::new("gmp-base-2", bits), &n, |b, n| {
            b.iter(|| assert!(gmp_strong_base_2(black_box(n))));
        });
    }
    group.finish();
}

criterion_group!(benches, primality, bpsw_curve);
criterion_main!(benches);
