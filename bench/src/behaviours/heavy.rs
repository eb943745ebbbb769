//! The heavy lane's table: honest load while clients loop on big numbers,
//! beside the lane's own capacity measured alone.

use super::*;

/// How long one primality test of `line` takes here, the least of `runs`
/// tries: the library's own parse and test, in this process, so the
/// lane's capacity is measured on the same machine at the same time.
fn time_one_test(line: &str, runs: usize) -> anyhow::Result<Duration> {
    let n = prime_server::prime::parse_int(line.as_bytes())
        .map_err(|e| anyhow::anyhow!("the heavy number does not parse: {e}"))?;
    let mut best = Duration::MAX;
    for _ in 0..runs.max(1) {
        let started = Instant::now();
        let prime = prime_server::prime::is_prime(std::hint::black_box(&n));
        best = best.min(started.elapsed());
        if !prime {
            bail!("the heavy number is not prime");
        }
    }
    Ok(best)
}

/// The heavy mix: light line-17 load while clients loop on big primes,
/// beside the light load alone; heavy answers/s beside the lane's capacity.
///
/// # Errors
///
/// The workloads could not be made or the heavy number did not test prime.
pub fn heavy_mix(bench: &Bench) -> anyhow::Result<(Table, Vec<Target>)> {
    let s = bench.settings;
    let light_requests = workload::requests(Workload::Seventeen)?;
    let heavy_requests = workload::requests(s.heavy_workload)?;
    let one_test = time_one_test(
        &heavy_requests[0].line,
        if s.heavy_round < Duration::from_secs(2) {
            1
        } else {
            2
        },
    )?;
    let capacity = s.big_tests as f64 / one_test.as_secs_f64().max(1e-9);
    // Long enough for each lane thread to finish a few tests.
    let window = s.heavy_round.max(one_test * 3);
    let flags = ["--big-tests".to_owned(), s.big_tests.to_string()];
    let mixed = format!("prime-server, light + {} heavy clients", s.heavy_clients);
    let variants = [
        Variant::prime(&mixed, with_admin(&flags)),
        Variant::prime("prime-server, light alone", with_admin(&flags)),
        Variant::floor(s.floor),
    ];
    // Each round starts every row afresh: heavy requests abandoned at the
    // end of a round would otherwise keep the lane (and the machine) busy
    // into the next row's round.
    let mut light: Vec<Result<Totals, String>> =
        variants.iter().map(|_| Ok(Totals::new(0))).collect();
    let mut heavy = LoadResult::empty();
    let mut walls = vec![Duration::ZERO; variants.len()];
    let n = variants.len();
    for round in 0..s.rounds.max(1) as usize {
        for offset in 0..n {
            let index = (round + offset) % n;
            let Ok(totals) = &mut light[index] else {
                continue;
            };
            let outcome = mix_round(
                bench,
                &variants[index],
                (index == 0).then_some(window),
                &light_requests,
                &heavy_requests,
            );
            match outcome {
                Ok(r) => {
                    totals.add(&r.light, &r.before, &r.after);
                    totals.peak_rss_kib = totals.peak_rss_kib.max(r.peak_rss_kib);
                    walls[index] += r.wall;
                    if let Some(h) = r.heavy {
                        heavy.merge(&h);
                    }
                }
                Err(e) => light[index] = Err(format!("{e:#}")),
            }
        }
    }
    // The mixed row's CPU is mostly the big tests': not the light
    // requests' own, so it is shown as cores busy instead.
    let cores_busy = |i: usize| {
        light[i]
            .as_ref()
            .ok()
            .and_then(|t| t.cpu)
            .filter(|_| !walls[i].is_zero())
            .map_or("-".to_owned(), |cpu| {
                format!("{:.2}", cpu.as_secs_f64() / walls[i].as_secs_f64())
            })
    };
    let heavy_cells = [
        report::rate(heavy.answer_pace()),
        format!("{capacity:.2}"),
        format!("{}/{}", heavy.requests, heavy.abandoned),
        format!("{}/{}", heavy.errors, heavy.wrong),
    ];
    let rows = variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let mut cells: Vec<String> = if i == 0 {
                heavy_cells.to_vec()
            } else {
                vec!["-".to_owned(); heavy_cells.len()]
            };
            cells.push(cores_busy(i));
            let mut r = row(v, &light[i], cells);
            if i == 0 {
                if let Ok(m) = &mut r.outcome {
                    m.server_cpu = None;
                    m.server_context_switches = None;
                }
            }
            r
        })
        .collect();
    let table = Table {
        title: format!(
            "Heavy mix: line 17, {} connections, connection per request, while {} clients loop on a {}",
            s.honest_concurrency,
            s.heavy_clients,
            s.heavy_workload.name()
        ),
        notes: vec![
            format!("prime-server runs with `--big-tests {}` (the lane's threads) and `--admin-listen`; the light load starts once every heavy client's request is in the lane (running or queued, from `/metrics`) and ends with the heavy loop, {:.1} s after it began (the larger of `--heavy-round` and three tests); heavy requests still queued then are abandoned and the server is stopped, so each round starts afresh", s.big_tests, window.as_secs_f64()),
            format!("one test of the {} takes {:.3} s here (the library's parse and test in the bench process, in this run), so the lane's capacity is {} / {:.3} s = {capacity:.2} answers/s", s.heavy_workload.name(), one_test.as_secs_f64(), s.big_tests, one_test.as_secs_f64()),
            "heavy answers/s: big-number answers over the time from the start of the heavy loop to its last answer; every lane thread starts its first test at once, so this is the lane's pace, without the tests the end of the round cut off".to_owned(),
            "the mixed row's server CPU and context switches are mostly the big tests', not the light requests' own, so they are left out; \"cores busy\" is server CPU time over wall time".to_owned(),
            "heavy answered/abandoned: big-number replies received in the rounds / requests cut off at their end; heavy errors/wrong must be 0/0".to_owned(),
        ],
        rows,
        extra_columns: vec![
            "heavy answers/s".to_owned(),
            "lane capacity/s".to_owned(),
            "heavy answered/abandoned".to_owned(),
            "heavy errors/wrong".to_owned(),
            "server cores busy".to_owned(),
        ],
    };
    let target = table.measured_row(&mixed).map(|m| Target {
        name: format!(
            "light p99 < 50 ms while {} clients loop on a {}",
            s.heavy_clients,
            s.heavy_workload.name()
        ),
        measured: format!(
            "p99 {} (alone {}), heavy {}/s of {capacity:.2}/s",
            report::micros(m.load.percentile(99.0)),
            table
                .measured_row("prime-server, light alone")
                .map_or("?".to_owned(), |a| report::micros(a.load.percentile(99.0))),
            report::rate(heavy.answer_pace())
        ),
        met: Some(honest_target_met(m) && heavy.errors == 0 && heavy.wrong == 0),
    });
    Ok((table, target.into_iter().collect()))
}

/// One round of one heavy-mix row.
struct MixRound {
    /// The light load.
    light: LoadResult,
    /// The heavy loop, in the mixed row.
    heavy: Option<LoadResult>,
    /// The server's counters before the round.
    before: Reading,
    /// And after.
    after: Reading,
    /// How long the round took, for cores busy.
    wall: Duration,
    /// The server's peak RSS at the end of the round.
    peak_rss_kib: Option<u64>,
}

/// Starts `variant` afresh and runs one round: light load alone, or (with
/// a heavy `window`) light load inside a loop of heavy requests that long.
fn mix_round(
    bench: &Bench,
    variant: &Variant,
    window: Option<Duration>,
    light_requests: &[Request],
    heavy_requests: &[Request],
) -> anyhow::Result<MixRound> {
    let s = bench.settings;
    let d = Deployment::start(bench, variant)?;
    probe(d.addr, light_requests, false, variant.kind)?;
    let started = Instant::now();
    let before = d.read(&[]);
    let (light, heavy) = if let Some(window) = window {
        let heavy_spec = LoadSpec {
            timeout: window + Duration::from_secs(600),
            abandon_at_stop: true,
            ..honest(d.addr, s.heavy_clients, Stop::Duration(window), false)
        };
        let server = &d.servers[0];
        let (light, heavy) = std::thread::scope(|scope| {
            let heavy = scope.spawn(|| load::run(&heavy_spec, heavy_requests));
            let full = wait_for(server, window / 2, |get| {
                Ok(get(BIG_RUNNING)? + get(BIG_QUEUED)? >= s.heavy_clients as f64)
            })
            .context("the heavy clients never filled the lane");
            let light = full.and_then(|()| {
                let left = (started + window).saturating_duration_since(Instant::now());
                if left.is_zero() {
                    bail!("the heavy loop ended before the light load could start");
                }
                let spec = honest(d.addr, s.honest_concurrency, Stop::Duration(left), false);
                Ok(load::run(&spec, light_requests))
            });
            let heavy = heavy
                .join()
                .map_err(|_| anyhow::anyhow!("the heavy load panicked"));
            (light, heavy)
        });
        (light?, Some(heavy?))
    } else {
        let spec = honest(d.addr, s.honest_concurrency, Stop::Duration(s.round), false);
        (load::run(&spec, light_requests), None)
    };
    let after = d.read(&[]);
    Ok(MixRound {
        light,
        heavy,
        before,
        after,
        wall: started.elapsed(),
        peak_rss_kib: d.peak_rss_kib(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_test_is_timed_and_must_be_prime() {
        assert!(time_one_test("1000003", 2).unwrap() < Duration::from_secs(1));
        assert!(time_one_test("1000001", 1).is_err());
        assert!(time_one_test("4j", 1).is_err());
    }
}
