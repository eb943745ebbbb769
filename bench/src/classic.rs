//! The classic part of the comparison: one table per workload (every
//! server beside the floor, rows alternating within each round), the
//! latency sweep behind the chart, and 64-bit requests during a flood of
//! 4300-digit ones.

use crate::load::{self, Generator, LoadResult, LoadSpec, Mode, Stop};
use crate::report::{Measured, Row, SweepPoint, Table};
use crate::servers::{Kind, Server, Toolbox};
use crate::workload::{self, Request, Workload};
use crate::CompareArgs;
use std::net::SocketAddr;
use std::time::Duration;

/// One comparison: a workload at a concurrency, in a mode.
pub(crate) struct Scenario {
    workload: Workload,
    concurrency: usize,
    mode: Mode,
    generator: Generator,
    round: Duration,
}

/// What the classic part of the comparison measured.
pub(crate) struct Classic {
    /// One per workload.
    pub(crate) tables: Vec<Table>,
    /// Latency against concurrency, for the chart.
    pub(crate) sweep: Vec<SweepPoint>,
    /// 64-bit requests during a flood of big ones.
    pub(crate) flood: Vec<Flood>,
    /// How to read them.
    pub(crate) notes: Vec<String>,
}

/// The per-workload tables, the latency sweep and the 4300-digit flood.
pub(crate) fn classic(
    args: &CompareArgs,
    tools: &Toolbox,
    rounds: u32,
    round: Duration,
    heavy_round: Duration,
) -> anyhow::Result<Classic> {
    let per_conn = |workload, concurrency| Scenario {
        workload,
        concurrency,
        mode: Mode::PerConnection,
        generator: Generator::Evented,
        round: if Workload::is_heavy(workload) {
            heavy_round
        } else {
            round
        },
    };
    let mut scenarios = vec![
        per_conn(Workload::Seventeen, 32),
        // The same load from a thread per connection: how much the
        // generator's shape moves the server's figures.
        Scenario {
            generator: Generator::Threads,
            ..per_conn(Workload::Seventeen, 32)
        },
        per_conn(Workload::Small, 32),
    ];
    if !args.smoke {
        scenarios.extend([
            per_conn(Workload::U64Primes, 32),
            per_conn(Workload::Digits100, 32),
            per_conn(Workload::Mix, 32),
            per_conn(Workload::Digits1000, 8),
            per_conn(Workload::Digits4300, 8),
        ]);
    }
    // Fewer pipelining clients than workers: a keep-alive connection holds
    // its worker, so more would measure the queue, not the server.
    scenarios.push(Scenario {
        workload: Workload::Seventeen,
        concurrency: if args.smoke { 2 } else { 8 },
        mode: Mode::Pipelined { depth: 64 },
        generator: Generator::Threads,
        round,
    });
    let mut notes = vec![format!(
        "floors: {} threads blocking in accept() (2, one per core, and one per prime-server worker), each with and without TCP_DEFER_ACCEPT; prime-server runs with --workers {}; every ratio is against the floor with the least server CPU per request in that table; big-number tables and the tables after the classic ones run only the cheapest floor of the first table",
        tools
            .floor_threads
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        tools.workers
    )];
    notes.push("connection-per-request rows are driven by one event-driven thread (epoll) unless the title says thread-per-connection generator; server cs/req is context switches of all the server's threads, from /proc/PID/task/*/status".to_owned());
    notes.push(format!("pipelined rows: the Python references speak one line per connection, so only prime-server and the floor with one thread per prime-server worker ({} threads; a keep-alive connection holds a thread) run them", tools.workers));

    let mut tables: Vec<Table> = Vec::new();
    for scenario in &scenarios {
        // Every floor answers big numbers as fast as small ones, so the
        // heavy tables need only one for reference.
        let only_floor = if scenario.workload.is_heavy() {
            tables
                .first()
                .and_then(Table::cheapest_floor)
                .map(|(kind, _)| kind)
        } else {
            None
        };
        let table = run_scenario(scenario, tools, rounds, only_floor)?;
        eprintln!("{}", table.markdown());
        tables.push(table);
    }

    let sweep_levels: &[usize] = if args.smoke {
        &[1, 4]
    } else {
        &[1, 4, 16, 32, 64]
    };
    let floor = tables
        .first()
        .and_then(Table::cheapest_floor)
        .map(|(kind, _)| kind);
    let sweep = run_sweep(
        tools,
        floor,
        sweep_levels,
        if args.smoke { round } else { args.round },
    )?;
    let flood = if args.smoke {
        Vec::new()
    } else {
        run_flood(tools, heavy_round)?
    };
    Ok(Classic {
        tables,
        sweep,
        flood,
        notes,
    })
}

/// Runs every server on one scenario: fresh servers, a probe, then rounds
/// in rotating order.
/// With `only_floor`, the other floors are left out.
fn run_scenario(
    scenario: &Scenario,
    tools: &Toolbox,
    rounds: u32,
    only_floor: Option<Kind>,
) -> anyhow::Result<Table> {
    let keep_alive = matches!(scenario.mode, Mode::Pipelined { .. });
    let requests = workload::requests(scenario.workload)?;
    let mut started: Vec<(Kind, Result<Server, String>)> = tools
        .available(keep_alive)
        .into_iter()
        .filter(|k| !k.is_floor() || only_floor.is_none_or(|f| f == *k))
        .map(|kind| {
            (
                kind,
                Server::start(kind, tools, keep_alive).map_err(|e| format!("{e:#}")),
            )
        })
        .collect();
    for (kind, server) in &mut started {
        if let Ok(s) = server {
            if let Err(why) = probe(s, &requests, scenario, *kind) {
                *server = Err(why);
            }
        }
    }
    let mut totals: Vec<(LoadResult, Duration, Option<u64>)> = started
        .iter()
        .map(|_| (LoadResult::empty(), Duration::ZERO, Some(0)))
        .collect();
    for round in 0..rounds as usize {
        let n = started.len();
        for offset in 0..n {
            let index = (round + offset) % n;
            let (kind, server) = &started[index];
            let Ok(server) = server else { continue };
            let spec = spec_for(server.addr, scenario, *kind, Stop::Duration(scenario.round));
            let cpu_before = server.cpu().unwrap_or_default();
            let cs_before = server.context_switches();
            let result = load::run(&spec, &requests);
            let cpu = server.cpu().unwrap_or_default().saturating_sub(cpu_before);
            let cs = cs_before
                .zip(server.context_switches())
                .map(|(before, after)| after.saturating_sub(before));
            totals[index].0.merge(&result);
            totals[index].1 += cpu;
            totals[index].2 = totals[index].2.zip(cs).map(|(sum, cs)| sum + cs);
        }
    }
    let rows = started
        .iter()
        .zip(totals)
        .map(|((kind, server), (load, server_cpu, cs))| {
            Row::plain(
                *kind,
                server.as_ref().map_err(Clone::clone).map(|s| Measured {
                    load,
                    server_cpu: Some(server_cpu),
                    server_context_switches: cs,
                    peak_rss_kib: s.peak_rss_kib(),
                }),
            )
        })
        .collect();
    let mode = match (scenario.mode, scenario.generator) {
        (Mode::PerConnection, Generator::Evented) => "connection per request".to_owned(),
        (Mode::PerConnection, Generator::Threads) => {
            format!("connection per request, {}", Generator::Threads.name())
        }
        (Mode::Pipelined { depth }, _) => {
            format!("keep-alive, {depth} lines pipelined per connection")
        }
    };
    Ok(Table::plain(
        format!(
            "{}, {} connections, {mode}",
            scenario.workload.name(),
            scenario.concurrency
        ),
        rows,
    ))
}

/// One request of every kind in the workload, with a bound: servers that
/// cannot answer in time (trial division on big primes) are left out.
fn probe(
    server: &Server,
    requests: &[Request],
    scenario: &Scenario,
    kind: Kind,
) -> Result<(), String> {
    let limit = if scenario.workload.is_heavy() {
        Duration::from_secs(20)
    } else {
        Duration::from_secs(2)
    };
    let mut distinct: Vec<&Request> = Vec::new();
    for r in requests {
        if distinct.len() < 8 && !distinct.iter().any(|d| d.line.len() == r.line.len()) {
            distinct.push(r);
        }
    }
    let sample: Vec<Request> = distinct.into_iter().cloned().collect();
    let mut spec = spec_for(
        server.addr,
        scenario,
        kind,
        Stop::Count(sample.len() as u64),
    );
    spec.concurrency = 1;
    spec.timeout = limit;
    let result = load::run(&spec, &sample);
    if result.errors > 0 {
        return Err(format!("no answer within {limit:?} per request"));
    }
    if result.wrong > 0 {
        return Err("wrong answers".to_owned());
    }
    Ok(())
}

fn spec_for(addr: SocketAddr, scenario: &Scenario, kind: Kind, stop: Stop) -> LoadSpec {
    LoadSpec {
        addr,
        concurrency: scenario.concurrency,
        mode: scenario.mode,
        generator: scenario.generator,
        stop,
        timeout: Duration::from_secs(60),
        check_replies: kind.answers_truly(),
        half_close: false,
        abandon_at_stop: false,
    }
}

/// Latency percentiles of the line `17` at several concurrencies, for
/// `floor` (the cheapest one; every floor when unknown) and the others.
fn run_sweep(
    tools: &Toolbox,
    floor: Option<Kind>,
    levels: &[usize],
    round: Duration,
) -> anyhow::Result<Vec<SweepPoint>> {
    let requests = workload::requests(Workload::Seventeen)?;
    let mut points = Vec::new();
    let kinds = tools
        .available(false)
        .into_iter()
        .filter(|k| !k.is_floor() || floor.is_none_or(|f| f == *k));
    for kind in kinds {
        let server = Server::start(kind, tools, false)?;
        for &concurrency in levels {
            let scenario = Scenario {
                workload: Workload::Seventeen,
                concurrency,
                mode: Mode::PerConnection,
                generator: Generator::Evented,
                round,
            };
            let r = load::run(
                &spec_for(server.addr, &scenario, kind, Stop::Duration(round)),
                &requests,
            );
            points.push(SweepPoint {
                kind,
                concurrency,
                percentiles: [r.percentile(50.0), r.percentile(90.0), r.percentile(99.0)],
            });
        }
    }
    Ok(points)
}

/// 64-bit requests while 8 clients flood 4300-digit primes.
pub(crate) struct Flood {
    /// The server.
    pub(crate) kind: Kind,
    /// The 64-bit requests' results.
    pub(crate) light: LoadResult,
    /// The flood's own results.
    pub(crate) heavy: LoadResult,
}

fn run_flood(tools: &Toolbox, duration: Duration) -> anyhow::Result<Vec<Flood>> {
    let light_requests = workload::requests(Workload::U64Primes)?;
    let heavy_requests = workload::requests(Workload::Digits4300)?;
    let mut out = Vec::new();
    for kind in tools.available(false) {
        if kind.is_floor() || kind == Kind::Python {
            continue;
        }
        let server = Server::start(kind, tools, false)?;
        let spec = |concurrency| LoadSpec {
            addr: server.addr,
            concurrency,
            mode: Mode::PerConnection,
            generator: Generator::Evented,
            stop: Stop::Duration(duration),
            timeout: Duration::from_secs(120),
            check_replies: true,
            half_close: false,
            abandon_at_stop: false,
        };
        let (heavy, light) = std::thread::scope(|scope| {
            let heavy = scope.spawn(|| load::run(&spec(8), &heavy_requests));
            // Let the flood fill the server first.
            std::thread::sleep(Duration::from_millis(200));
            let light = load::run(&spec(8), &light_requests);
            (heavy.join().unwrap_or_else(|_| LoadResult::empty()), light)
        });
        out.push(Flood { kind, light, heavy });
    }
    Ok(out)
}
