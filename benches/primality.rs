//! The cost curve of one request's work without the network: parse plus
//! classify at 10, 20, 100, 1000 and 4300 digits, beside GMP's own
//! `mpz_probab_prime_p` on the same number, so the overhead of our path
//! over GMP is visible. `make bench` runs it; `make test` compiles and runs
//! each case once.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use prime_server::prime::is_prime;
use prime_server::prime::parse_int;
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

criterion_group!(benches, primality);
criterion_main!(benches);
