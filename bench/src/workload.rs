//! Workloads: the lines the generator sends, each with the reply it expects.

use anyhow::{bail, Context};
use clap::ValueEnum;
use prime_server::prime::parse_int;
use prime_server::prime::Verdict;
use prime_server::prime::{is_prime, is_prime_u64};
use std::path::{Path, PathBuf};

/// A named set of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Workload {
    /// The line `17`, always: the cheapest real request.
    Seventeen,
    /// Integers below a million, primes and composites.
    Small,
    /// Primes just below 2^64: the most expensive 64-bit requests.
    U64Primes,
    /// 25-digit primes (just above 10^24): above 2^64, on the native
    /// 128-bit path.
    Digits25,
    /// 38-digit primes (just above 10^37): the native 128-bit path near
    /// its top (2^128 is about 3.4e38).
    Digits38,
    /// 100-digit primes.
    Digits100,
    /// 300-digit primes (just above 10^299).
    Digits300,
    /// A 1000-digit prime.
    Digits1000,
    /// A 4300-digit prime: the largest integer Python accepts.
    Digits4300,
    /// Mostly small integers, some 64-bit primes, a few 100-digit primes.
    Mix,
}

impl Workload {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Seventeen => "line 17",
            Workload::Small => "small integers",
            Workload::U64Primes => "64-bit primes",
            Workload::Digits25 => "25-digit primes",
            Workload::Digits38 => "38-digit primes",
            Workload::Digits100 => "100-digit primes",
            Workload::Digits300 => "300-digit primes",
            Workload::Digits1000 => "1000-digit prime",
            Workload::Digits4300 => "4300-digit prime",
            Workload::Mix => "mix",
        }
    }

    /// Whether one request costs a noticeable amount of CPU (big numbers).
    pub fn is_heavy(self) -> bool {
        matches!(self, Workload::Digits1000 | Workload::Digits4300)
    }
}

/// One line to send and the reply it must get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The line, without its newline.
    pub line: String,
    /// The verdict a correct server gives.
    pub expected: Verdict,
}

/// Where the bench keeps its data files (the big primes).
pub fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

/// The requests of `workload`.
///
/// # Errors
///
/// A data file is missing or unreadable.
pub fn requests(workload: Workload) -> anyhow::Result<Vec<Request>> {
    Ok(match workload {
        Workload::Seventeen => vec![known("17", Verdict::Prime)],
        Workload::Small => small_integers(),
        Workload::U64Primes => u64_primes(64),
        Workload::Digits25 => digit_primes(25),
        Workload::Digits38 => digit_primes(38),
        Workload::Digits100 => digit_primes(100),
        Workload::Digits300 => digit_primes(300),
        Workload::Digits1000 => vec![known(&read_number("prime-1000.txt")?, Verdict::Prime)],
        Workload::Digits4300 => vec![known(&read_number("prime-4300.txt")?, Verdict::Prime)],
        Workload::Mix => {
            let mut mix = Vec::new();
            let small = small_integers();
            let primes = u64_primes(16);
            let big = digit_primes(100);
            for i in 0..1000 {
                mix.push(match i % 100 {
                    0 | 1 => big[i % big.len()].clone(),
                    2..=9 => primes[i % primes.len()].clone(),
                    _ => small[i % small.len()].clone(),
                });
            }
            mix
        }
    })
}

/// Requests read from a file, one per line, their replies computed here.
///
/// # Errors
///
/// The file cannot be read or holds no lines.
pub fn requests_from_file(path: &Path) -> anyhow::Result<Vec<Request>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let requests: Vec<Request> = text
        .lines()
        .map(|line| Request {
            line: line.to_owned(),
            expected: match parse_int(line.as_bytes()) {
                Ok(n) if is_prime(&n) => Verdict::Prime,
                Ok(_) => Verdict::NotPrime,
                Err(_) => Verdict::NotInteger,
            },
        })
        .collect();
    if requests.is_empty() {
        bail!("{} holds no lines", path.display());
    }
    Ok(requests)
}

fn known(line: &str, expected: Verdict) -> Request {
    Request {
        line: line.to_owned(),
        expected,
    }
}

fn read_number(file: &str) -> anyhow::Result<String> {
    let path = data_dir().join(file);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// 1000 integers spread below a million; the expected answers come from a
/// sieve, independent of the server's own test.
fn small_integers() -> Vec<Request> {
    const LIMIT: usize = 1_000_000;
    let mut composite = vec![false; LIMIT];
    for i in 2..LIMIT {
        if !composite[i] {
            for j in (i * i..LIMIT).step_by(i) {
                composite[j] = true;
            }
        }
    }
    (0..1000u64)
        .map(|i| {
            let n = (i * 7919 + 13) % LIMIT as u64;
            let prime = n >= 2 && !composite[n as usize];
            known(
                &n.to_string(),
                if prime {
                    Verdict::Prime
                } else {
                    Verdict::NotPrime
                },
            )
        })
        .collect()
}

/// The `count` largest primes below 2^64, found by counting down.
fn u64_primes(count: usize) -> Vec<Request> {
    (0..=u64::MAX)
        .rev()
        .filter(|&n| is_prime_u64(n))
        .take(count)
        .map(|n| known(&n.to_string(), Verdict::Prime))
        .collect()
}

/// Four primes of `digits` digits, the first above k * 10^(digits - 1)
/// for k = 1 to 4, found by GMP's `next_prime`.
fn digit_primes(digits: u32) -> Vec<Request> {
    (1..=4u32)
        .map(|k| {
            let start = rug::Integer::from(rug::Integer::u_pow_u(10, digits - 1)) * k;
            let p = start.next_prime();
            known(&p.to_string(), Verdict::Prime)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sized_primes_have_their_digits_and_sit_where_the_paths_change() {
        let two_64 = rug::Integer::from(1) << 64;
        let two_128 = rug::Integer::from(1) << 128;
        for (workload, digits) in [
            (Workload::Digits25, 25),
            (Workload::Digits38, 38),
            (Workload::Digits100, 100),
            (Workload::Digits300, 300),
        ] {
            let requests = requests(workload).unwrap();
            assert_eq!(requests.len(), 4);
            for r in &requests {
                assert_eq!(r.line.len(), digits, "{}", r.line);
                assert_eq!(r.expected, Verdict::Prime);
                let n: rug::Integer = r.line.parse().unwrap();
                assert!(n > two_64);
                assert_eq!(n < two_128, digits <= 38, "{n}");
            }
        }
    }
}
