//! Primality under load: prime-server's CPU per request on primes of each
//! size its arithmetic treats differently (64-bit; 25 and 38 digits on the
//! native 128-bit path; 100 and 300 digits on GMP's limbs, in the heavy
//! lane), beside what one strong base-2 test and GMP's whole test cost in
//! gmpy2, timed in-process on the same numbers, and the library's own test
//! timed in the bench's process. The targets for big numbers are
//! ratios of these: a 25- or 38-digit prime against a 64-bit one, a 100-
//! or 300-digit prime against one base-2 test.

use super::*;
use crate::report::Grid;
use prime_server::prime::{is_prime, parse_int, ParsedInt};
use std::io::Write as _;
use std::process::{Command, Stdio};

/// The sizes, in the table's order; the first is the one the "vs 64-bit
/// prime" column compares with.
const SIZES: [Workload; 5] = [
    Workload::U64Primes,
    Workload::Digits25,
    Workload::Digits38,
    Workload::Digits100,
    Workload::Digits300,
];

/// What a target divides a size's server CPU per request by.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Against {
    /// The 64-bit primes' server CPU per request.
    U64Prime,
    /// One strong base-2 test of the same number (gmpy2, in-process).
    BaseTwoTest,
}

/// The targets for big numbers: at most this many times what they
/// are measured against.
const TARGETS: [(Workload, Against, f64); 4] = [
    (Workload::Digits25, Against::U64Prime, 1.25),
    (Workload::Digits38, Against::U64Prime, 1.25),
    (Workload::Digits100, Against::BaseTwoTest, 4.0),
    (Workload::Digits300, Against::BaseTwoTest, 3.6),
];

/// The heading of the section's table.
const TITLE: &str = "Primality under load: server CPU per request by size";

/// What the primality section measured.
pub struct Primality {
    /// One row per size, and the floor's for reference.
    pub grid: Grid,
    /// The targets for big numbers.
    pub targets: Vec<Target>,
}

/// gmpy2's times for one size's numbers, each the mean of one call over
/// them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Gmpy2Times {
    /// `gmpy2.is_strong_prp(n, 2)`: one strong base-2 test.
    strong_prp: Duration,
    /// `gmpy2.is_prime(n)`: GMP's `mpz_probab_prime_p`, gmpy2's default
    /// rounds.
    is_prime: Duration,
    /// `gmpy2.is_odd(n)` in the same loop: the loop and the call alone,
    /// included in both the others.
    call: Duration,
}

/// gmpy2's times, with the versions they were taken with.
struct Gmpy2 {
    /// `gmpy2 X, GMP Y`.
    versions: String,
    /// One per size, in [`SIZES`] order.
    times: Vec<Gmpy2Times>,
}

/// The primality section: each size's load against one prime-server, the
/// 64-bit primes' against the floor, rows alternating within each round;
/// gmpy2's and the library's tests timed in-process before the load.
///
/// # Errors
///
/// A workload could not be made, or a number of it is not prime to the
/// library's test.
pub fn primality(bench: &Bench) -> anyhow::Result<Primality> {
    let s = bench.settings;
    let sizes: Vec<Vec<Request>> = SIZES
        .iter()
        .map(|&w| workload::requests(w))
        .collect::<anyhow::Result<_>>()?;
    // In-process timings first, while no server of ours runs.
    let library: Vec<Duration> = sizes
        .iter()
        .map(|requests| library_time(requests, s.test_timing, s.test_repeats))
        .collect::<anyhow::Result<_>>()?;
    let gmpy2 = gmpy2_times(bench.tools, &sizes, s.test_timing, s.test_repeats)
        .map_err(|e| format!("{e:#}"));

    let variants = [
        Variant::prime("prime-server", Launch::default()),
        Variant::floor(s.floor),
    ];
    let deployments: Vec<Result<Deployment, String>> = variants
        .iter()
        .map(|v| Deployment::start(bench, v).map_err(|e| format!("{e:#}")))
        .collect();
    // (deployment, size) per row: every size on prime-server, then the
    // 64-bit primes on the floor.
    let rows: Vec<(usize, usize)> = (0..sizes.len())
        .map(|size| (0, size))
        .chain([(1, 0)])
        .collect();
    let mut totals: Vec<Result<Totals, String>> = rows
        .iter()
        .map(|&(d, size)| {
            let deployment = deployments[d].as_ref().map_err(Clone::clone)?;
            probe(deployment.addr, &sizes[size], false, variants[d].kind)
                .map_err(|e| format!("{e:#}"))?;
            Ok(Totals::new(0))
        })
        .collect();
    let n = rows.len();
    for round in 0..s.rounds.max(1) as usize {
        for offset in 0..n {
            let index = (round + offset) % n;
            let (d, size) = rows[index];
            let (Ok(totals), Ok(deployment)) = (&mut totals[index], &deployments[d]) else {
                continue;
            };
            let mut spec = honest(
                deployment.addr,
                s.concurrency,
                Stop::Duration(s.round),
                false,
            );
            spec.check_replies = variants[d].kind.answers_truly();
            let before = deployment.read(&[]);
            let result = load::run(&spec, &sizes[size]);
            let after = deployment.read(&[]);
            totals.add(&result, &before, &after);
        }
    }
    drop(deployments);

    let cpu: Vec<Option<f64>> = totals
        .iter()
        .map(|t| t.as_ref().ok()?.measured().cpu_per_request())
        .collect();
    let strong_prp = |size: usize| {
        gmpy2
            .as_ref()
            .ok()
            .map(|g| g.times[size].strong_prp.as_secs_f64() * 1e6)
    };
    let ratio =
        |a: Option<f64>, b: Option<f64>| a.zip(b).filter(|(_, b)| *b > 0.0).map(|(a, b)| a / b);
    let grid_rows: Vec<Vec<String>> = rows
        .iter()
        .enumerate()
        .map(|(index, &(d, size))| {
            let (rate, errors, wrong) = match &totals[index] {
                Ok(t) => (
                    report::rate(t.load.rate()),
                    t.load.errors.to_string(),
                    t.load.wrong.to_string(),
                ),
                Err(why) => (format!("n/a: {why}"), "-".to_owned(), "-".to_owned()),
            };
            let cpu_cell = cpu[index].map_or("-".to_owned(), |c| format!("{c:.1}"));
            if variants[d].kind.is_floor() {
                let mut cells = vec![
                    format!("{}, {}", s.floor.name(), SIZES[size].name()),
                    rate,
                    cpu_cell,
                ];
                cells.extend(["-"; 5].map(str::to_owned));
                cells.push(format!("{errors}/-"));
                return cells;
            }
            let times = gmpy2.as_ref().ok().map(|g| g.times[size]);
            let gmpy2_cell = |f: fn(&Gmpy2Times) -> Duration| {
                times.as_ref().map_or("n/a".to_owned(), |t| in_us(f(t)))
            };
            vec![
                SIZES[size].name().to_owned(),
                rate,
                cpu_cell,
                ratio_cell(ratio(cpu[index], cpu[0])),
                gmpy2_cell(|t| t.strong_prp),
                ratio_cell(ratio(cpu[index], strong_prp(size))),
                gmpy2_cell(|t| t.is_prime),
                in_us(library[size]),
                format!("{errors}/{wrong}"),
            ]
        })
        .collect();

    let tools = bench.tools;
    let least = s.test_timing.as_secs_f64() * 1e3;
    let mut notes = vec![
        format!("connection-per-request load from the event-driven generator, {} connections, {:.1} s a round, {} round(s), the rows alternating within each round; every size against one prime-server with default flags (`--workers {}`, the heavy lane's `--big-tests` at its default, one per core); the last row is the floor ({}) on the 64-bit primes", s.concurrency, s.round.as_secs_f64(), s.rounds.max(1), tools.workers, s.floor.name()),
        "the numbers: the 64 largest primes below 2^64; for 25, 38, 100 and 300 digits, the first prime above k * 10^(digits - 1) for k = 1 to 4 (GMP's `next_prime`). 25 and 38 digits lie between 2^64 and 2^128 (prime-server's native 128-bit path, answered on the workers), 100 and 300 digits above (Baillie-PSW on GMP's limbs, in the heavy lane)".to_owned(),
        "server CPU us/req: the server process's CPU time (every thread, its CPU clock, as in every table) over its rounds, over the requests answered. It includes each connection's own cost (accept, read, reply, close, the audit line): the floor row is that cost in a server that does nothing else".to_owned(),
        "vs 64-bit prime: server CPU us/req over the 64-bit primes' row".to_owned(),
        format!("gmpy2 columns: `gmpy2.is_strong_prp(n, 2)` (one strong base-2 test) and `gmpy2.is_prime(n)` (GMP's `mpz_probab_prime_p` with gmpy2's default 25 rounds: trial division, Baillie-PSW and, from GMP 6.2 on, one Miller-Rabin round), in the bench's Python (bench/python/time_primality.py) before the load, with no server running: `timeit` of a loop over the same numbers the load sends (already `mpz`), run enough times to last {least:.0} ms, best of {}, over the calls", s.test_repeats.max(1)),
        "server CPU over one base-2 test: server CPU us/req over the `is_strong_prp` column, i.e. how many base-2 tests' worth of CPU one answered request costs the server, connection included".to_owned(),
        format!("library is_prime us: `prime_server::prime::is_prime` on the parsed number (no socket, no audit line), in the bench's process, timed the same way ({least:.0} ms, best of {}): the test's share of server CPU us/req", s.test_repeats.max(1)),
        "errors/wrong: failed requests / replies other than T; the floor's replies are not checked".to_owned(),
    ];
    match &gmpy2 {
        Ok(g) => {
            let call = g.times.iter().map(|t| t.call).max().unwrap_or_default();
            notes.push(format!(
                "{}; the loop and the call alone (`gmpy2.is_odd(n)` in the same loop) take up to {} us per call, inside both gmpy2 columns",
                g.versions,
                in_us(call)
            ));
        }
        Err(why) => notes.push(format!("gmpy2 columns n/a: {why}")),
    }

    let targets = TARGETS
        .iter()
        .map(|&(workload, against, bound)| {
            let size = size_index(workload);
            let (base, what, word) = match against {
                Against::U64Prime => (cpu[0], "vs a 64-bit prime", "vs"),
                Against::BaseTwoTest => (
                    strong_prp(size),
                    "over one base-2 strong test (gmpy2 in-process)",
                    "over",
                ),
            };
            let r = ratio(cpu[size], base);
            Target {
                // `{bound:?}`: 1.25 and 4.0 as written.
                name: format!(
                    "{}: server CPU/request {what} (<= {bound:?}x)",
                    singular(workload)
                ),
                measured: r.map_or("n/a".to_owned(), |r| {
                    format!(
                        "{r:.2}x ({:.1} us {word} {:.1} us)",
                        cpu[size].unwrap_or_default(),
                        base.unwrap_or_default()
                    )
                }),
                met: r.map(|r| r <= bound),
            }
        })
        .collect();

    Ok(Primality {
        grid: Grid {
            title: TITLE.to_owned(),
            notes,
            header: [
                "size",
                "req/s",
                "server CPU us/req",
                "vs 64-bit prime",
                "gmpy2 is_strong_prp(n,2) us",
                "server CPU over one base-2 test",
                "gmpy2 is_prime us",
                "library is_prime us",
                "errors/wrong",
            ]
            .map(str::to_owned)
            .to_vec(),
            rows: grid_rows,
        },
        targets,
    })
}

/// Where `workload` is in [`SIZES`].
fn size_index(workload: Workload) -> usize {
    SIZES.iter().position(|&w| w == workload).unwrap_or(0)
}

/// "25-digit prime" for "25-digit primes": how a target names one request.
fn singular(workload: Workload) -> &'static str {
    let name = workload.name();
    name.strip_suffix('s').unwrap_or(name)
}

/// A ratio as `1.23x`, or `-`.
fn ratio_cell(ratio: Option<f64>) -> String {
    ratio.map_or("-".to_owned(), |r| format!("{r:.2}x"))
}

/// A time in microseconds, with three significant figures or so.
fn in_us(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.2}")
    } else if us < 100.0 {
        format!("{us:.1}")
    } else {
        format!("{us:.0}")
    }
}

/// The mean time of one library test of `requests`' numbers: parsed first,
/// then `is_prime` on each in a loop, timed as [`per_call`] does.
///
/// # Errors
///
/// A line does not parse, or its number is not prime.
fn library_time(requests: &[Request], least: Duration, repeats: u32) -> anyhow::Result<Duration> {
    let numbers: Vec<ParsedInt> = requests
        .iter()
        .map(|r| {
            parse_int(r.line.as_bytes())
                .map_err(|e| anyhow::anyhow!("{:?} does not parse: {e}", r.line))
        })
        .collect::<anyhow::Result<_>>()?;
    if let Some(r) = requests.iter().zip(&numbers).find(|(_, n)| !is_prime(n)) {
        bail!("{} is not prime to the library", r.0.line);
    }
    Ok(per_call(&numbers, least, repeats, is_prime))
}

/// The mean time of one call of `test` on `items`: a loop over them all,
/// run enough times to last at least `least`, the best of `repeats` such
/// runs, over the calls. Zero for no items.
fn per_call<T>(items: &[T], least: Duration, repeats: u32, test: impl Fn(&T) -> bool) -> Duration {
    if items.is_empty() {
        return Duration::ZERO;
    }
    let run = |loops: u64| {
        let started = Instant::now();
        for _ in 0..loops {
            for item in items {
                std::hint::black_box(test(std::hint::black_box(item)));
            }
        }
        started.elapsed()
    };
    let mut loops: u64 = 1;
    let mut best = loop {
        let took = run(loops);
        if took >= least {
            break took;
        }
        // Aim a little past the target, at least doubling.
        let aim = least.as_secs_f64() * 1.2 / took.as_secs_f64().max(1e-9) * loops as f64;
        loops = (loops * 2).max(aim.min(1e12) as u64);
    };
    for _ in 1..repeats.max(1) {
        best = best.min(run(loops));
    }
    best.div_f64(loops as f64 * items.len() as f64)
}

/// gmpy2's times for each size's numbers, from
/// `bench/python/time_primality.py` in the bench's Python.
///
/// # Errors
///
/// No Python, no gmpy2, or the script failed or said something else.
fn gmpy2_times(
    tools: &Toolbox,
    sizes: &[Vec<Request>],
    least: Duration,
    repeats: u32,
) -> anyhow::Result<Gmpy2> {
    let python = tools
        .python
        .as_ref()
        .context("python3 not found (scripts/bench-venv.sh makes bench/.venv with gmpy2)")?;
    if !tools.gmpy2 {
        bail!(
            "{} cannot import gmpy2 (scripts/bench-venv.sh, run by make bench, installs it into bench/.venv)",
            python.display()
        );
    }
    let script = tools.python_script.with_file_name("time_primality.py");
    let versions = Command::new(python)
        .arg(&script)
        .arg("--version")
        .output()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let versions = String::from_utf8_lossy(&versions.stdout).trim().to_owned();
    let mut child = Command::new(python)
        .arg(&script)
        .arg("--seconds")
        .arg(least.as_secs_f64().to_string())
        .arg("--repeat")
        .arg(repeats.max(1).to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", python.display()))?;
    let input: String = sizes
        .iter()
        .map(|requests| {
            let lines: Vec<&str> = requests.iter().map(|r| r.line.as_str()).collect();
            lines.join(" ") + "\n"
        })
        .collect();
    // A few kilobytes: the pipe holds them before the script reads.
    let written = child
        .stdin
        .take()
        .context("no stdin")?
        .write_all(input.as_bytes());
    let out = child
        .wait_with_output()
        .with_context(|| format!("cannot wait for {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    written.with_context(|| format!("cannot write to {}", script.display()))?;
    let times = parse_times(&String::from_utf8_lossy(&out.stdout))?;
    if times.len() != sizes.len() {
        bail!(
            "{} timed {} sizes of {}",
            script.display(),
            times.len(),
            sizes.len()
        );
    }
    Ok(Gmpy2 { versions, times })
}

/// The script's output: a line of three seconds per size.
///
/// # Errors
///
/// A line is not three non-negative numbers.
fn parse_times(text: &str) -> anyhow::Result<Vec<Gmpy2Times>> {
    text.lines()
        .map(|line| {
            let seconds: Vec<Duration> = line
                .split_whitespace()
                .map(|word| {
                    let s: f64 = word
                        .parse()
                        .with_context(|| format!("not a number: {word:?}"))?;
                    Duration::try_from_secs_f64(s).with_context(|| format!("not a time: {word:?}"))
                })
                .collect::<anyhow::Result<_>>()?;
            match seconds[..] {
                [strong_prp, is_prime, call] => Ok(Gmpy2Times {
                    strong_prp,
                    is_prime,
                    call,
                }),
                _ => bail!("not three times: {line:?}"),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_says_three_times_a_size() {
        let times = parse_times("1e-06 2.5e-06 5e-08\n0.001 0.002 0.0\n").unwrap();
        assert_eq!(times.len(), 2);
        assert_eq!(times[0].strong_prp, Duration::from_micros(1));
        assert_eq!(times[1].is_prime, Duration::from_millis(2));
        assert!(parse_times("1e-06 2e-06\n").is_err());
        assert!(parse_times("1e-06 -2e-06 0\n").is_err());
        assert!(parse_times("x 1 1\n").is_err());
        assert!(parse_times("").unwrap().is_empty());
    }

    #[test]
    fn calls_are_timed_per_item_and_must_be_prime() {
        let calls = Cell::new(0u64);
        let items = [1u64, 2, 3, 4];
        let per = per_call(&items, Duration::from_millis(2), 2, |&x| {
            calls.set(calls.get() + 1);
            x > 0
        });
        assert!(
            per > Duration::ZERO && per < Duration::from_millis(1),
            "{per:?}"
        );
        assert_eq!(calls.get() % 4, 0, "whole loops over the items");
        assert_eq!(
            per_call::<u64>(&[], Duration::from_secs(1), 1, |_| true),
            Duration::ZERO
        );
        let primes = workload::requests(Workload::Digits25).unwrap();
        assert!(library_time(&primes, Duration::from_millis(1), 1).unwrap() > Duration::ZERO);
        let composite = [Request {
            line: "1000000000000000000000001".to_owned(),
            expected: prime_server::prime::Verdict::Prime,
        }];
        assert!(library_time(&composite, Duration::from_millis(1), 1).is_err());
    }

    #[test]
    fn targets_name_one_request() {
        assert_eq!(singular(Workload::Digits25), "25-digit prime");
        assert_eq!(singular(Workload::Digits1000), "1000-digit prime");
        assert_eq!(size_index(Workload::Digits300), 4);
        assert_eq!(in_us(Duration::from_nanos(1_234)), "1.23");
        assert_eq!(in_us(Duration::from_nanos(12_345)), "12.3");
        assert_eq!(in_us(Duration::from_nanos(1_234_567)), "1235");
    }
}
